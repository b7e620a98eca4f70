from django.db.models import Q
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.api import current_user, get_visible
from annotator.views import lesion_queryset
from inference.batch import round_preannotate, round_preannotation_progress
from inference.models import InferenceJob, ModelVersion
from inference.serializers import (
    InferenceJobSerializer,
    ModelVersionSerializer,
    SegmentRequestSerializer,
)
from inference.services import segmentation_request
from projects.access import require_role, visible_tasks
from projects.models import Role, Round
from projects.views import project_for


class LesionSegmentView(APIView):
    @extend_schema(request=SegmentRequestSerializer, responses={202: InferenceJobSerializer})
    def post(self, request: Request, pk: int) -> Response:
        """Segment the lesion in 3D from a box on its key slice; poll the returned job."""
        lesion = get_visible(lesion_queryset(request), pk=pk)
        data = SegmentRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = segmentation_request(lesion=lesion, user=current_user(request), **data.validated_data)
        job.refresh_from_db()
        return Response(InferenceJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobDetailView(APIView):
    @extend_schema(responses=InferenceJobSerializer)
    def get(self, request: Request, pk: int) -> Response:
        jobs = InferenceJob.objects.filter(lesion__task__in=visible_tasks(current_user(request)))
        return Response(InferenceJobSerializer(get_visible(jobs, pk=pk)).data)


class ModelVersionListView(APIView):
    @extend_schema(responses=ModelVersionSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        """The project's own models and the site-wide ones it can use."""
        project = project_for(request, slug)
        versions = ModelVersion.objects.filter(Q(project=project) | Q(project__isnull=True))
        return Response(ModelVersionSerializer(versions, many=True).data)


PreannotationProgress = inline_serializer(
    "PreannotationProgress",
    {
        "total": serializers.IntegerField(),
        "queued": serializers.IntegerField(),
        "running": serializers.IntegerField(),
        "succeeded": serializers.IntegerField(),
        "failed": serializers.IntegerField(),
        "failures": serializers.ListField(child=serializers.DictField()),
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
        """The round's pre-annotation: its latest batch job per lesion counted by state, and
        the failures' reasons."""
        return Response(round_preannotation_progress(self._round(request, slug, number)))

    @extend_schema(request=None, responses={202: PreannotationProgress})
    def post(self, request: Request, slug: str, number: int) -> Response:
        """Queue on gpu-batch a segmentation of every prompted lesion that has no mask yet (and
        no job waiting); failed ones are retried. ``started``: how many jobs this call queued."""
        round_ = self._round(request, slug, number)
        jobs = round_preannotate(round=round_, user=current_user(request))
        body = {**round_preannotation_progress(round_), "started": len(jobs)}
        return Response(body, status=status.HTTP_202_ACCEPTED)
