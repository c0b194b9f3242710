from __future__ import annotations

from django import forms

from networks.builtin import BUILTIN_NETWORKS


class UploadForm(forms.Form):
    name = forms.CharField(max_length=200)
    weights = forms.FileField(help_text="A .safetensors file (nothing is ever unpickled).")
    network = forms.CharField(max_length=200_000, initial="resnet18",
                              help_text=f"A built-in ({', '.join(BUILTIN_NETWORKS)}) or a layer spec as JSON.")
    classes = forms.CharField(help_text='Comma-separated names, or a JSON list.')
    input_shape = forms.CharField(initial="[3, 224, 224]", help_text="[C, H, W], C 1 or 3.")
    preprocessing = forms.CharField(required=False, initial='{"mean": "none"}',
                                    help_text='The mean the weights expect: {"mean": "none" | "pixel" | "image"}.')


class FromJobForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    epoch = forms.FloatField(required=False, help_text="Empty: the latest snapshot.")
