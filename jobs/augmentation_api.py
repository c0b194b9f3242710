"""GET datasets/{id}/augmentation-preview/: training images as an augmentation spec changes them."""
from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import selectors as dataset_selectors
from jobs.augmentation_preview import MAX_PREVIEW_IMAGES, augmentation_preview


class AugmentationPreviewQuery(serializers.Serializer):
    augmentation = serializers.CharField(required=False, default="{}", max_length=2000,
                                         help_text='The job\'s `augmentation` setting as JSON, e.g. {"rot90": true}.')
    seed = serializers.IntegerField(min_value=0, max_value=2**32 - 1, default=0,
                                    help_text="Picks the images and what is drawn for them: the same seed shows "
                                              "the same, another seed another sample.")
    count = serializers.IntegerField(min_value=1, max_value=MAX_PREVIEW_IMAGES, default=16)

    def validate_augmentation(self, raw: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise serializers.ValidationError('Give JSON, e.g. {"flip": "horizontal"}.') from None


class PreviewImageOutput(serializers.Serializer):
    label = serializers.CharField()
    original = serializers.CharField(help_text="PNG data URL of the training image.")
    augmented = serializers.CharField(help_text="PNG data URL of the image as augmented (0..1 pixels).")
    network = serializers.CharField(help_text="PNG data URL of the network's input: augmented less the mean, "
                                              "-1..1 shown as black..white.")


class AugmentationPreviewOutput(serializers.Serializer):
    seed = serializers.IntegerField()
    images = PreviewImageOutput(many=True)


class AugmentationPreviewApi(APIView):
    """Training images of one of your datasets, augmented on a worker by the code training runs
    (400 naming the key of a bad spec; 503/504 when no worker answers)."""

    @extend_schema(parameters=[AugmentationPreviewQuery], responses=AugmentationPreviewOutput)
    def get(self, request: Request, pk: int) -> Response:
        dataset = dataset_selectors.dataset_get(user=request.user, pk=pk)
        query = AugmentationPreviewQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(augmentation_preview(dataset=dataset, **query.validated_data))
