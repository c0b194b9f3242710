"""The job form's augmentation fields: one field per key of the `augmentation` setting.

The bounds are not repeated here: the fields hand their values to `augmentation_parse` (the check
the service and the API run), and its message, which names the key, is shown beside that key's field.
"""
from __future__ import annotations

from typing import Any

from django import forms

from training.augmentation import FLIPS, HSV_KEYS, MEANS, AugmentationError, augmentation_parse

FLIP_LABELS = {"none": "No flips", "horizontal": "Left-right", "vertical": "Top-bottom", "both": "Both"}
MEAN_LABELS = {"image": "The mean image", "pixel": "The mean of each channel", "none": "Nothing"}
# The form field of each key (the first field of a key that has several).
FIELD_OF_KEY = {"flip": "aug_flip", "rot90": "aug_rot90", "rotate_degrees": "aug_rotate_degrees",
                "translate": "aug_translate", "scale": "aug_scale_low", "crop_padding": "aug_crop_padding",
                "noise_std": "aug_noise_std", "hsv": "aug_hue", "hue": "aug_hue", "saturation": "aug_saturation",
                "value": "aug_value", "mean": "aug_mean"}
NUMBER_KEYS = ("rotate_degrees", "translate", "crop_padding", "noise_std")


def _number(label: str, help_text: str = "", *, initial: float = 0, integer: bool = False) -> forms.Field:
    kind = forms.IntegerField if integer else forms.FloatField
    field = kind(required=False, initial=initial, label=label, help_text=help_text)
    field.widget.attrs.update(step="1" if integer else "any", **{"data-augmentation": "1"})
    return field


class AugmentationForm(forms.Form):
    """Fields named aug_<key>; `clean()` leaves the checked dict in cleaned_data["augmentation"]."""

    # Blank choices mean the default, like the blank numbers: a form posted without them augments nothing.
    aug_flip = forms.ChoiceField(choices=[(f, FLIP_LABELS[f]) for f in FLIPS], initial="none", required=False,
                                 label="Random flips")
    aug_rot90 = forms.BooleanField(required=False, label="Random quarter turns")
    aug_rotate_degrees = _number("Rotate ±", "Degrees, 0 to 180")
    aug_translate = _number("Shift ±", "0 to 0.5 of the side")
    aug_scale_low = _number("Scale from", initial=1)
    aug_scale_high = _number("Scale to", "Above 1 zooms in", initial=1)
    aug_crop_padding = _number("Pad and crop", "Pixels, 0 to 64", integer=True)
    aug_noise_std = _number("Noise σ", "On 0..1 pixels")
    aug_hue = _number("Hue ±", "0 to 0.5 of the circle")
    aug_saturation = _number("Saturation ±", "0 to 1")
    aug_value = _number("Brightness ±", "0 to 1")
    aug_mean = forms.ChoiceField(choices=[(m, MEAN_LABELS[m]) for m in MEANS], initial="image", required=False,
                                 label="Subtract", help_text="From every image, in training and after")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("aug_flip", "aug_rot90", "aug_mean"):
            self.fields[name].widget.attrs["data-augmentation"] = "1"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        raw = augmentation_from_fields(cleaned)
        dataset = cleaned.get("dataset")
        try:
            augmentation_parse(raw, channels=dataset.channels if dataset is not None else 3)
        except AugmentationError as exc:
            self.add_error(augmentation_error_field(str(exc)), str(exc))
        for name in list(cleaned):
            if name.startswith("aug_"):
                del cleaned[name]
        cleaned["augmentation"] = raw
        return cleaned

    @property
    def dataset_channels(self) -> dict[int, int]:
        """Channels of each dataset the form offers, so the page hides colour shifts for grayscale ones."""
        field = self.fields.get("dataset")
        return {} if field is None else dict(field.queryset.values_list("pk", "channels"))


def augmentation_from_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The keys the fields turn on (the rest is the default), as POST jobs/ takes them."""
    raw: dict[str, Any] = {}
    if values.get("aug_flip") not in (None, "", "none"):
        raw["flip"] = values["aug_flip"]
    if values.get("aug_rot90"):
        raw["rot90"] = True
    for key in NUMBER_KEYS:
        if values.get(f"aug_{key}"):
            raw[key] = values[f"aug_{key}"]
    scale = [_or(values.get("aug_scale_low"), 1.0), _or(values.get("aug_scale_high"), 1.0)]
    if scale != [1.0, 1.0]:
        raw["scale"] = scale
    hsv = {key: _or(values.get(f"aug_{key}"), 0.0) for key in HSV_KEYS}
    if any(hsv.values()):
        raw["hsv"] = hsv
    if values.get("aug_mean") not in (None, "", "image"):
        raw["mean"] = values["aug_mean"]
    return raw


def augmentation_initial(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The fields' values for a job's stored augmentation (a clone starts with the same)."""
    stored = stored or {}
    initial = {FIELD_OF_KEY[key]: stored[key] for key in ("flip", "rot90", "mean", *NUMBER_KEYS) if key in stored}
    if "scale" in stored:
        initial["aug_scale_low"], initial["aug_scale_high"] = stored["scale"]
    for key, value in (stored.get("hsv") or {}).items():
        initial[f"aug_{key}"] = value
    return initial


def augmentation_error_field(message: str) -> str | None:
    """The field of the key an AugmentationError (or the service's error) names: "augmentation.hsv.hue: ..."."""
    head = message.split(":", 1)[0]
    if not head.startswith("augmentation."):
        return None
    return FIELD_OF_KEY.get(head.split(".")[-1])


def _or(value: Any, default: float) -> float:
    return default if value is None else value
