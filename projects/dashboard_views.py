"""The manager's dashboard and the per-lesion effort table (managers only)."""

import json
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.core.rest import current_user
from projects.access import require_role
from projects.dashboard import effort_csv, project_dashboard
from projects.models import Role
from projects.views import project_for


class RoundEffortSerializer(serializers.Serializer):
    round = serializers.IntegerField()
    tasks = serializers.IntegerField(help_text="finished (submitted or accepted) tasks")
    lesions = serializers.IntegerField()
    manual = serializers.BooleanField(help_text="lesions finished, none with a model mask")
    model_version = serializers.CharField(allow_null=True, required=False)
    median_active_s = serializers.FloatField(allow_null=True, required=False)
    mean_active_s = serializers.FloatField(allow_null=True, required=False)
    model_dice_median = serializers.FloatField(allow_null=True, required=False)
    model_dice_mean = serializers.FloatField(allow_null=True, required=False)
    model_hd95_median_mm = serializers.FloatField(allow_null=True, required=False)
    edited_fraction_mean = serializers.FloatField(allow_null=True, required=False)
    accepted_without_edits = serializers.FloatField(
        help_text="share of model-annotated lesions accepted unchanged",
        allow_null=True,
        required=False,
    )
    slices = serializers.IntegerField()
    slices_fixed = serializers.IntegerField()
    cost_reduction = serializers.FloatField(allow_null=True, required=False)


class QueueRowSerializer(serializers.Serializer):
    round = serializers.IntegerField()
    unassigned = serializers.IntegerField()
    assigned = serializers.IntegerField()
    submitted = serializers.IntegerField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    total = serializers.IntegerField()


class ThroughputSerializer(serializers.Serializer):
    day = serializers.DateField()
    annotator = serializers.CharField()
    submitted = serializers.IntegerField()
    accepted = serializers.IntegerField()


class AnnotatorEffortSerializer(serializers.Serializer):
    annotator = serializers.CharField()
    tasks = serializers.IntegerField()
    lesions = serializers.IntegerField()
    active_s = serializers.FloatField()
    median_active_s = serializers.FloatField(allow_null=True, required=False)


class DashboardSerializer(serializers.Serializer):
    project = serializers.CharField()
    cost_basis = serializers.ChoiceField(
        choices=["manual_round", "slice_estimate"], allow_null=True
    )
    baseline_round = serializers.IntegerField(allow_null=True, required=False)
    baseline_cost_s = serializers.FloatField(allow_null=True, required=False)
    cost_definition = serializers.CharField()
    rounds = RoundEffortSerializer(many=True)
    queue = QueueRowSerializer(many=True)
    throughput = ThroughputSerializer(many=True)
    annotators = AnnotatorEffortSerializer(many=True)


class DashboardView(APIView):
    @extend_schema(responses=DashboardSerializer)
    def get(self, request: Request, slug: str) -> Response:
        """Throughput, queue depth, effort, model quality and cost reduction per round."""
        project = project_for(request, slug)
        require_role(current_user(request), project, Role.MANAGER)
        return Response(project_dashboard(project=project))


class CSVRenderer(BaseRenderer):
    """Lets clients ask for text/csv; an error body is still sent as JSON text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> Any:
        return data if isinstance(data, str | bytes) else json.dumps(data)


class EffortCsvView(APIView):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="api_projects_effort_csv",
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="one row per lesion")
        },
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        """The per-lesion effort table of the project as CSV."""
        project = project_for(request, slug)
        require_role(current_user(request), project, Role.MANAGER)
        response = HttpResponse(effort_csv(project=project), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-effort.csv"'
        return response
