from django.db.models import Q
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.annotation.views import lesion_queryset
from annotator.core import queues
from annotator.core.rest import current_user, get_visible
from inference.batch import round_preannotate, round_preannotation_progress
from inference.models import InferenceJob, ModelVersion, TrainingJob
from inference.recovery import job_recover, jobs_recover
from inference.serializers import (
    InferenceJobSerializer,
    ModelVersionSerializer,
    SegmentRequestSerializer,
    TrainingJobSerializer,
)
from inference.services import segmentation_request
from inference.training import model_version_promote, training_request
from projects.access import require_role
from projects.models import Role, Round, Task
from projects.serializers import ProjectSerializer
from projects.views import project_for


class LesionSegmentView(APIView):
    @extend_schema(request=SegmentRequestSerializer, responses={202: InferenceJobSerializer})
    def post(self, request: Request, pk: int) -> Response:
        """Segment the lesion in 3D from a box on its key slice, optionally with click points
        and a mask prompt (a slice of its latest saved mask to propagate); poll the job."""
        lesion = get_visible(lesion_queryset(request), pk=pk)
        data = SegmentRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = segmentation_request(lesion=lesion, user=current_user(request), **data.validated_data)
        job.refresh_from_db()
        return Response(InferenceJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobDetailView(APIView):
    @extend_schema(responses=InferenceJobSerializer)
    def get(self, request: Request, pk: int) -> Response:
        """A segmentation job's state, progress, error and notice; a job whose worker is gone
        is re-queued (or failed) before it is shown."""
        jobs = InferenceJob.objects.filter(
            lesion__task__in=Task.objects.visible_to(current_user(request))
        )
        return Response(InferenceJobSerializer(job_recover(get_visible(jobs, pk=pk))).data)


class ModelVersionListView(APIView):
    @extend_schema(responses=ModelVersionSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        """The project's own models and the site-wide ones it can use."""
        project = project_for(request, slug)
        versions = ModelVersion.objects.filter(
            Q(project=project) | Q(project__isnull=True)
        ).prefetch_related("trained_from_rounds")
        return Response(ModelVersionSerializer(versions, many=True).data)


class ModelVersionPromoteView(APIView):
    @extend_schema(request=None, responses=ProjectSerializer)
    def post(self, request: Request, slug: str, pk: int) -> Response:
        """Make the model version the project's active model (managers): rounds opened from now
        on pre-annotate with it. Returns the project."""
        project = project_for(request, slug)
        user = current_user(request)
        require_role(user, project, Role.MANAGER)
        versions = ModelVersion.objects.filter(Q(project=project) | Q(project__isnull=True))
        version = get_visible(versions, pk=pk)
        project = model_version_promote(project=project, version=version, user=user)
        return Response(ProjectSerializer(project, context={"request": request}).data)


PreannotationProgress = inline_serializer(
    "PreannotationProgress",
    {
        "total": serializers.IntegerField(),
        "queued": serializers.IntegerField(),
        "running": serializers.IntegerField(),
        "succeeded": serializers.IntegerField(),
        "failed": serializers.IntegerField(),
        "failures": inline_serializer(
            "PreannotationFailure",
            {
                "job": serializers.IntegerField(),
                "lesion": serializers.IntegerField(),
                "task": serializers.IntegerField(),
                "error": serializers.CharField(),
            },
            many=True,
        ),
        "notices": inline_serializer(
            "PreannotationNotice",
            {
                "job": serializers.IntegerField(),
                "lesion": serializers.IntegerField(),
                "task": serializers.IntegerField(),
                "state": serializers.ChoiceField(choices=["queued", "running"]),
                "notice": serializers.CharField(),
            },
            many=True,
        ),
        "started": serializers.IntegerField(required=False),
    },
)


class RoundPreannotateView(APIView):
    def _round(self, request: Request, slug: str, number: int) -> Round:
        project = project_for(request, slug)
        require_role(current_user(request), project, Role.MANAGER)
        return get_visible(Round.objects.filter(project=project), number=number)

    @extend_schema(responses=PreannotationProgress)
    def get(self, request: Request, slug: str, number: int) -> Response:
        """The round's pre-annotation: its latest batch job per lesion counted by state, the
        failures' reasons and the notices of jobs re-queued after losing their worker."""
        round_ = self._round(request, slug, number)
        jobs_recover(InferenceJob.objects.filter(queue=queues.BATCH, lesion__task__round=round_))
        return Response(round_preannotation_progress(round_))

    @extend_schema(request=None, responses={202: PreannotationProgress})
    def post(self, request: Request, slug: str, number: int) -> Response:
        """Queue on gpu-batch a segmentation of every prompted lesion that has no mask yet (and
        no job waiting); failed ones are retried. ``started``: how many jobs this call queued."""
        round_ = self._round(request, slug, number)
        jobs = round_preannotate(round=round_, user=current_user(request))
        body = {**round_preannotation_progress(round_), "started": len(jobs)}
        return Response(body, status=status.HTTP_202_ACCEPTED)


class RoundTrainView(APIView):
    @extend_schema(request=None, responses={202: TrainingJobSerializer})
    def post(self, request: Request, slug: str, number: int) -> Response:
        """Train the project's learned model on the accepted tasks of this round and the ones
        before it (managers); the next round opened uses it. Poll the returned job."""
        project = project_for(request, slug)
        user = current_user(request)
        require_role(user, project, Role.MANAGER)
        round_ = get_visible(Round.objects.filter(project=project), number=number)
        job = training_request(round=round_, user=user)
        job.refresh_from_db()
        return Response(TrainingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class TrainingJobDetailView(APIView):
    @extend_schema(responses=TrainingJobSerializer)
    def get(self, request: Request, pk: int) -> Response:
        """A training job's state, progress, error and resulting model (managers)."""
        user = current_user(request)
        jobs = TrainingJob.objects.filter(project__memberships__user_id=user.id).select_related(
            "project", "round", "result"
        )
        job = get_visible(jobs, pk=pk)
        require_role(user, job.project, Role.MANAGER)
        return Response(TrainingJobSerializer(job_recover(job)).data)
