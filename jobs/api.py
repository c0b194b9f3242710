from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import selectors as dataset_selectors
from jobs import selectors, services
from jobs.inference import job_infer
from jobs.models import TrainingJob
from jobs.options import DEFAULTS, GROUP_MAX_LENGTH, NAME_MAX_LENGTH, NOTES_MAX_LENGTH, SETTINGS, setting_type
from training.schedules import learning_rate_curve
from workbench.api import NoInput, Pagination, RequestInput, error_response, paginated
from workbench.uploads import TOO_LARGE, upload_too_large


class JobOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    snapshots = serializers.SerializerMethodField()
    elapsed_seconds = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    sweep = serializers.SerializerMethodField(help_text="The sweep this job is a trial of (id), or null.")
    params = serializers.SerializerMethodField(help_text="The settings its sweep chose, or null.")
    task = serializers.CharField(source="dataset.task", read_only=True, help_text="Its dataset's vision task.")
    worker = serializers.CharField(read_only=True, help_text=(
        "The Celery worker (its node name, `<WORKER_NAME>@<host>`) of the run that holds it, or held it "
        "last; \"\" when it never ran. The name part of `held_by`."))

    class Meta:
        model = TrainingJob
        fields = ["id", "name", "owner", "status", "progress", "epoch", "eta_seconds", "elapsed_seconds", "latest",
                  "best", "error", "snapshots", "dataset", "network", "backend", "epochs", "batch_size",
                  "optimizer", "learning_rate", "momentum", "weight_decay", "lr_policy", "lr_step_size", "lr_gamma",
                  "lr_milestones", "seed", "device", "device_used", "val_interval", "snapshot_interval",
                  "augmentation", "accumulate", "grad_clip", "label_smoothing", "amp", "devices", "compile",
                  "pretrained", "freeze_epochs", "pretrained_lr_mult",
                  "resume_from_epoch", "attempt", "retries", "held_by", "worker", "heartbeat_at", "created_at",
                  "started_at", "finished_at", "url"]
        fields += ["group", "notes", "stop_reason", "sweep", "params", "task"]

    def get_sweep(self, job: TrainingJob) -> int | None:
        trial = selectors.job_trial(job=job)
        return None if trial is None else trial.sweep_id

    def get_params(self, job: TrainingJob) -> dict[str, Any] | None:
        trial = selectors.job_trial(job=job)
        return None if trial is None else trial.params

    def get_snapshots(self, job: TrainingJob) -> list[float]:
        return selectors.job_snapshot_epochs(job=job)

    def get_elapsed_seconds(self, job: TrainingJob) -> float | None:
        return selectors.job_elapsed_seconds(job=job)

    def get_url(self, job: TrainingJob) -> str:
        return reverse("job-detail", args=[job.pk])


class JobDetailOutput(JobOutput):
    log_tail = serializers.SerializerMethodField()
    network_spec = serializers.JSONField()
    stale = serializers.BooleanField(read_only=True, help_text="Running, but its worker has been silent for "
                                     "WORKBENCH_HEARTBEAT_TIMEOUT: a worker is taking it back.")

    class Meta(JobOutput.Meta):
        fields = JobOutput.Meta.fields + ["log_tail", "network_spec", "pretrained_report", "stale"]

    def get_log_tail(self, job: TrainingJob) -> list[str]:
        return selectors.job_log_tail(job=job)


def setting_field(name: str, **extra: Any) -> serializers.Field:
    """The API field of job setting `name`: its type, default, bounds or choices and help from
    jobs.options (the service's own table)."""
    setting = SETTINGS[name]
    kwargs: dict[str, Any] = {"default": getattr(DEFAULTS, name), "help_text": setting.help or None, **extra}
    if setting.choices:
        return serializers.ChoiceField(choices=list(setting.choices), **kwargs)
    if setting.pattern is not None:
        return serializers.RegexField(setting.pattern, error_messages={"invalid": setting.refusal()}, **kwargs)
    bounds = {"min_value": setting.low, "max_value": setting.high}
    kwargs.update({key: value for key, value in bounds.items() if value is not None})
    if setting.message:
        kwargs["error_messages"] = {"min_value": setting.message, "max_value": setting.message}
    number = serializers.IntegerField if setting_type(name) == "int" else serializers.FloatField
    return number(**kwargs)


class JobInput(RequestInput):
    name = serializers.CharField(max_length=NAME_MAX_LENGTH, required=False, allow_blank=True, default="")
    dataset = serializers.IntegerField()
    network = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",
                                    help_text="Built-in name or custom network (id or name); blank: the task's default. "
                                              "A built-in brings its own defaults for the solver fields left out "
                                              "(the U-Net: adam, learning rate 0.001, batch 8).")
    epochs = setting_field("epochs")
    batch_size = setting_field("batch_size")
    optimizer = setting_field("optimizer")
    learning_rate = setting_field("learning_rate")
    momentum = setting_field("momentum")
    weight_decay = setting_field("weight_decay")
    lr_policy = setting_field("lr_policy")
    lr_step_size = setting_field("lr_step_size")
    lr_gamma = setting_field("lr_gamma")
    lr_milestones = serializers.ListField(child=serializers.FloatField(min_value=0.01), default=list)
    seed = setting_field("seed")
    device = setting_field("device")
    val_interval = setting_field("val_interval")
    snapshot_interval = setting_field("snapshot_interval")
    backend = serializers.CharField(required=False, allow_blank=True, default="")
    group = serializers.CharField(max_length=GROUP_MAX_LENGTH, required=False, allow_blank=True, default="")
    notes = serializers.CharField(max_length=NOTES_MAX_LENGTH, required=False, allow_blank=True, default="",
                                  trim_whitespace=False)
    # Their bounds are the service's (job_create): it names the key of a bad augmentation.
    augmentation = serializers.JSONField(required=False, allow_null=True, default=dict,
                                         help_text="flip, rot90, rotate_degrees, translate, scale, crop_padding, "
                                                   "noise_std, hsv {hue, saturation, value}, mean image/pixel/none")
    accumulate = setting_field("accumulate")
    grad_clip = setting_field("grad_clip")
    label_smoothing = setting_field("label_smoothing")
    amp = setting_field("amp")
    devices = serializers.ListField(child=serializers.CharField(max_length=16), default=list, max_length=64,
                                    help_text='One job on several devices (DDP), one process each: "cuda:N", '
                                              '"cuda" (the next free GPU) or "cpu". The batch size is split across them.')
    compile = serializers.BooleanField(default=DEFAULTS.compile, help_text="torch.compile the network; eager if it fails.")
    # Checked by the service (pretrained.services): the source must be the user's and fit the network.
    pretrained = serializers.JSONField(required=False, allow_null=True, default=dict,
                                       help_text='{"job": id, "epoch": e} (epoch optional: latest) or {"model": id}')
    freeze_epochs = setting_field("freeze_epochs")
    pretrained_lr_mult = setting_field("pretrained_lr_mult")

    def job_settings(self) -> services.JobSettings:
        data = {k: v for k, v in self.validated_data.items() if k not in ("dataset", "network")}
        data["pretrained"] = data.get("pretrained") or {}
        return services.JobSettings(**data)

    def given(self) -> set[str]:
        """The settings the request named: the rest take the network's defaults (job_create)."""
        return set(self.initial_data) & set(services.JobSettings.__dataclass_fields__)


def _job_create(request: Request) -> Response:
    given = JobInput(data=request.data)
    given.is_valid(raise_exception=True)
    dataset = dataset_selectors.dataset_list(user=request.user).filter(pk=given.validated_data["dataset"]).first()
    if dataset is None:
        return error_response("No such dataset.", {"dataset": ["No such dataset."]})
    job = services.job_create(owner=request.user, dataset=dataset, network=given.validated_data["network"],
                              options=given.job_settings(), given=given.given())
    return Response(JobOutput(job).data, status=status.HTTP_201_CREATED)


def _one_of(choices: list[str], what: str) -> serializers.ChoiceField:
    """An optional choice whose error names the allowed values."""
    message = f'"{{input}}" is not a valid {what}; use one of: {", ".join(choices)}.'
    return serializers.ChoiceField(choices=choices, required=False, allow_blank=True, default="",
                                   error_messages={"invalid_choice": message})


class JobListQuery(serializers.Serializer):
    status = _one_of(TrainingJob.Status.values, "status")
    dataset = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                       help_text="Only the jobs on this dataset (id).")
    search = serializers.CharField(required=False, allow_blank=True, default="", max_length=200,
                                   help_text="Only the jobs whose name contains this (case-insensitive).")
    network = serializers.CharField(required=False, allow_blank=True, default="", max_length=100,
                                    help_text="Only the jobs of this network (built-in or custom name).")
    group = serializers.CharField(required=False, allow_blank=True, default="", max_length=100,
                                  help_text="Only the jobs of this group.")
    ordering = _one_of(selectors.JOB_ORDERING_CHOICES, "ordering")
    sweep = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                     help_text="Only the trials of this sweep (id).")


class JobListApi(APIView):
    pagination_class = Pagination

    @extend_schema(parameters=[JobListQuery], responses=JobOutput(many=True))
    def get(self, request: Request) -> Response:
        query = JobListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        jobs = selectors.job_list_filtered(user=request.user, **query.validated_data)
        return paginated(request, jobs, JobOutput, self)

    @extend_schema(request=JobInput, responses={201: JobOutput})
    def post(self, request: Request) -> Response:
        return _job_create(request)


class JobUpdateInput(RequestInput):
    notes = serializers.CharField(max_length=NOTES_MAX_LENGTH, required=False, allow_blank=True, trim_whitespace=False)
    group = serializers.CharField(max_length=GROUP_MAX_LENGTH, required=False, allow_blank=True)

    def unknown_field(self, name: str) -> str:
        return "Only notes and group can be changed on a job."

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if not data:
            raise serializers.ValidationError({"non_field_errors": ["Give notes or group to change."]})
        return data


class JobDetailApi(APIView):
    @extend_schema(responses=JobDetailOutput)
    def get(self, request: Request, pk: int) -> Response:
        return Response(JobDetailOutput(selectors.job_get(user=request.user, pk=pk)).data)

    @extend_schema(request=JobUpdateInput, responses=JobDetailOutput)
    def patch(self, request: Request, pk: int) -> Response:
        job = selectors.job_get(user=request.user, pk=pk)
        given = JobUpdateInput(data=request.data)
        given.is_valid(raise_exception=True)
        job = services.job_update(job=job, **given.validated_data)
        return Response(JobDetailOutput(job).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.job_delete(job=selectors.job_get(user=request.user, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class _JobActionApi(APIView):
    created = False

    @extend_schema(request=NoInput, responses=JobOutput)
    def post(self, request: Request, pk: int) -> Response:
        job = selectors.job_get(user=request.user, pk=pk)
        NoInput(data=request.data).is_valid(raise_exception=True)
        result = self.act(job, request)
        return Response(JobOutput(result).data, status=status.HTTP_201_CREATED if self.created else 200)

    def act(self, job: TrainingJob, request: Request) -> TrainingJob:
        raise NotImplementedError


class JobAbortApi(_JobActionApi):
    def act(self, job: TrainingJob, request: Request) -> TrainingJob:
        return services.job_abort(job=job)


class JobResumeApi(_JobActionApi):
    def act(self, job: TrainingJob, request: Request) -> TrainingJob:
        return services.job_resume(job=job)


class JobCloneApi(_JobActionApi):
    created = True

    def act(self, job: TrainingJob, request: Request) -> TrainingJob:
        return services.job_clone(job=job, owner=request.user)


class MetricsOutput(serializers.Serializer):
    points = serializers.ListField(child=serializers.DictField())
    cursor = serializers.IntegerField()
    status = serializers.CharField()
    downsampled = serializers.BooleanField()


class MetricsQuery(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, default=0)
    max_points = serializers.IntegerField(min_value=2, max_value=100_000, required=False)


class JobMetricsApi(APIView):
    @extend_schema(parameters=[OpenApiParameter("after", int, description="Cursor from the previous answer"),
                               OpenApiParameter("max_points", int, description="At most this many points per "
                                                "curve, keeping its minima and maxima (2..100000)")],
                   responses=MetricsOutput)
    def get(self, request: Request, pk: int) -> Response:
        job = selectors.job_get(user=request.user, pk=pk)
        query = MetricsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = query.validated_data["after"]
        if "max_points" in query.validated_data:
            cut = selectors.job_metrics_downsampled(job_id=job.pk, after=after,
                                                    max_points=query.validated_data["max_points"])
            return Response({"points": cut.points, "cursor": cut.cursor, "status": job.status,
                             "downsampled": cut.downsampled})
        points = [selectors.metric_dict(p) for p in selectors.job_metrics(job_id=job.pk, after=after)]
        cursor = points[-1]["id"] if points else after
        return Response({"points": points, "cursor": cursor, "status": job.status, "downsampled": False})


class LrScheduleQuery(JobInput):
    """The job's own bounds on its schedule fields (JobInput), milestones as the form writes them ("5, 8")."""

    refuses_unknown = False  # a GET query string (like every list filter), not a request body

    name = dataset = network = batch_size = optimizer = momentum = weight_decay = None  # type: ignore[assignment]
    seed = device = val_interval = snapshot_interval = backend = group = notes = None  # type: ignore[assignment]
    lr_milestones = serializers.CharField(required=False, allow_blank=True, default="", max_length=500,
                                          help_text="Epochs, comma-separated (multistep policy).")
    points = serializers.IntegerField(min_value=2, max_value=2000, default=300)

    def validate_lr_milestones(self, raw: str) -> list[float]:
        try:
            milestones = sorted(float(part) for part in raw.replace(";", ",").split(",") if part.strip())
        except ValueError:
            raise serializers.ValidationError("Give epochs as numbers separated by commas, e.g. 5, 8.") from None
        if any(m <= 0 for m in milestones):
            raise serializers.ValidationError("Milestones are epochs above 0.")
        return milestones


class LrScheduleApi(APIView):
    """The learning rate over the epochs for these settings, from the schedule code training uses."""

    @extend_schema(parameters=[LrScheduleQuery], responses={200: dict})
    def get(self, request: Request) -> Response:
        query = LrScheduleQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        given = query.validated_data
        params = {"step_size": given["lr_step_size"], "gamma": given["lr_gamma"], "milestones": given["lr_milestones"]}
        return Response({"points": learning_rate_curve(given["lr_policy"], given["learning_rate"], given["epochs"],
                                                       params, given["points"])})


class PredictionOutput(serializers.Serializer):
    label = serializers.CharField()
    probability = serializers.FloatField()


class ClassifyOutput(serializers.Serializer):
    predictions = PredictionOutput(many=True, help_text="Top 5, best first.")
    epoch = serializers.FloatField(help_text="Epoch of the snapshot used.")
    preprocessed = serializers.CharField(help_text="The input as the network saw it, as a PNG data URL.")


class ClassifyInput(RequestInput):
    image = serializers.FileField()
    epoch = serializers.FloatField(required=False, allow_null=True, default=None)


class InferInput(ClassifyInput):
    score_threshold = serializers.FloatField(
        required=False, allow_null=True, default=None, min_value=0.0, max_value=1.0,
        help_text="detection: leave out boxes scoring below it (default 0.3); other tasks ignore it.")


class BoxOutput(serializers.Serializer):
    label = serializers.CharField()
    class_index = serializers.IntegerField()
    score = serializers.FloatField()
    box = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4,
                                help_text="[x1, y1, x2, y2] in the uploaded image's own pixels.")


class InferOutput(serializers.Serializer):
    task = serializers.CharField(help_text="The job's vision task; the fields below depend on it.")
    predictions = PredictionOutput(many=True, required=False, help_text="classification: top 5, best first.")
    width = serializers.IntegerField(required=False, help_text="segmentation, detection: the uploaded image's own width.")
    height = serializers.IntegerField(required=False,
                                     help_text="segmentation, detection: the uploaded image's own height.")
    mask = serializers.CharField(required=False, help_text=(
        "segmentation: base64 PNG of class indices (8-bit grey; 16-bit past 256 classes), width x height."))
    classes = serializers.ListField(child=serializers.CharField(), required=False,
                                    help_text="segmentation: the class of each mask value, in order.")
    class_pixels = serializers.DictField(child=serializers.FloatField(), required=False,
                                         help_text="segmentation: each class's share of the mask's pixels.")
    boxes = BoxOutput(many=True, required=False, help_text=(
        "detection: the boxes scoring at least score_threshold, best first, in the uploaded image's own pixels."))
    score_threshold = serializers.FloatField(required=False, help_text="detection: the threshold applied.")
    epoch = serializers.FloatField()
    preprocessed = serializers.CharField(help_text="The input as the network saw it, as a PNG data URL.")


class JobInferApi(APIView):
    """One image through a snapshot, answered as the job's vision task answers."""

    @extend_schema(request={"multipart/form-data": InferInput}, responses=InferOutput)
    def post(self, request: Request, pk: int) -> Response:
        job = selectors.job_get_to_infer(user=request.user, pk=pk)
        given = InferInput(data=request.data)
        if upload_too_large(request):
            return error_response(TOO_LARGE, status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        answer = job_infer(job=job, image=data["image"], epoch=data["epoch"],
                           options={"score_threshold": data["score_threshold"]})
        return Response(answer)


class JobClassifyApi(JobInferApi):
    """Classify: infer for a classification job (its answer also says `task`)."""

    @extend_schema(request={"multipart/form-data": ClassifyInput}, responses=ClassifyOutput)
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


