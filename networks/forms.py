from __future__ import annotations

from typing import Any

from django import forms

from networks.spec import SpecError, parse_spec_text


class NetworkForm(forms.Form):
    name = forms.RegexField(r"^[\w][\w .-]{0,99}$", error_messages={
        "invalid": "Use letters, digits, spaces, '.', '-' or '_' (at most 100)."})
    description = forms.CharField(required=False, max_length=500)
    spec = forms.CharField(widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "code"}),
                           label="Layer spec (JSON)",
                           help_text="A custom network serves classification (it ends in one score per class) or "
                                     "segmentation (one score per class for each pixel). Detection trains its "
                                     "built-in network, centernet, only.")

    def clean_spec(self) -> dict[str, Any]:
        try:
            return parse_spec_text(self.cleaned_data["spec"])
        except SpecError as exc:
            raise forms.ValidationError(str(exc)) from None
