from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import MaxValueValidator

from datasets.ingest.pipeline import IngestOptions
from datasets.options import (
    BOX_FORMAT_LABELS,
    DEFAULT_IGNORE_INDEX,
    MAX_SPLIT_PERCENT,
    MIN_SIDE,
    RESIZE_MODE_LABELS,
    TASK_LABELS,
    max_side,
    per_class_problems,
    source_problems,
    split_problems,
)


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=200)
    # Not required: a form posted by a script written before segmentation means classification.
    task = forms.ChoiceField(choices=TASK_LABELS, initial="classification", required=False)
    archive = forms.FileField(required=False, help_text="zip, tar or tar.gz: one folder per class, or (segmentation) "
                                                        "images/ and masks/, or (detection) images/ and labels/.")
    server_path = forms.CharField(required=False, max_length=1000,
                                  help_text="Or such a folder under an allowed server root.")
    image_width = forms.IntegerField(min_value=MIN_SIDE, initial=32)
    image_height = forms.IntegerField(min_value=MIN_SIDE, initial=32)
    channels = forms.TypedChoiceField(choices=[(1, "Grayscale (1)"), (3, "Colour (3)")], coerce=int, initial=3)
    resize_mode = forms.ChoiceField(choices=RESIZE_MODE_LABELS, initial="squash")
    val_percent = forms.IntegerField(min_value=0, max_value=MAX_SPLIT_PERCENT, initial=20, label="Validation %")
    test_percent = forms.IntegerField(min_value=0, max_value=MAX_SPLIT_PERCENT, initial=0, label="Test %")
    seed = forms.IntegerField(min_value=0, max_value=2**32 - 1, initial=0)
    min_per_class = forms.IntegerField(min_value=1, initial=1, label="Min images per class")
    max_per_class = forms.IntegerField(min_value=1, required=False, label="Max images per class")
    ignore_index = forms.IntegerField(min_value=0, max_value=255, initial=DEFAULT_IGNORE_INDEX, required=False,
                                      label="Ignore index", help_text="Segmentation: the mask value that is no class.")
    box_format = forms.ChoiceField(choices=BOX_FORMAT_LABELS, required=False, initial="", label="Label format",
                                   help_text="Detection: read from the files unless named here.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for side in ("image_width", "image_height"):
            field = self.fields[side]
            # The cap is a setting, read per form so a changed environment takes effect.
            field.validators.append(MaxValueValidator(max_side()))
            field.widget.attrs["max"] = max_side()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        problems = source_problems(bool(data.get("archive")), (data.get("server_path") or "").strip())
        if "val_percent" in data and "test_percent" in data:
            problems |= split_problems(data["val_percent"], data["test_percent"])
        if "min_per_class" in data:
            problems |= per_class_problems(data["min_per_class"], data.get("max_per_class"))
        for field, message in problems.items():
            self.add_error(field, message)
        return data

    def options(self) -> IngestOptions:
        data = self.cleaned_data
        return IngestOptions(width=data["image_width"], height=data["image_height"], channels=data["channels"],
                             resize_mode=data["resize_mode"], val_percent=data["val_percent"],
                             test_percent=data["test_percent"], seed=data["seed"],
                             min_per_class=data["min_per_class"], max_per_class=data.get("max_per_class"),
                             task=data.get("task") or "classification", ignore_index=self._ignore_index(),
                             box_format=(data.get("box_format") or "") if data.get("task") == "detection" else "")

    def _ignore_index(self) -> int:
        # A classification dataset has no masks: the field, always sent by the browser, means nothing to it.
        given = self.cleaned_data.get("ignore_index")
        return DEFAULT_IGNORE_INDEX if given is None or self.cleaned_data.get("task") != "segmentation" else given
