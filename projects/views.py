from pathlib import Path
from typing import Any

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.annotation.audit import ACTIONS, audit_events
from annotator.core.errors import InvalidInput
from annotator.core.rest import current_user, get_visible, query_params
from annotator.imaging.dicomweb.wado import warm_series_metadata
from annotator.models import Lesion, Pseudonym
from projects import services, task_services
from projects.access import require_role, visible_projects
from projects.exports import round_manifest
from projects.intake.image_import import volume_import
from projects.intake.label_import import LabelsImported, volume_with_labels_import
from projects.models import AuditEvent, Membership, Project, Review, Role, Round, Task
from projects.serializers import (
    DESCRIPTION_CHARS,
    AuditEventSerializer,
    AuditQuerySerializer,
    MembershipSerializer,
    MembershipSetSerializer,
    ProjectCreateSerializer,
    ProjectSerializer,
    ProjectUpdateSerializer,
    ReviewCreateSerializer,
    ReviewSerializer,
    RoundManifestSerializer,
    RoundSerializer,
    TaskAssignSerializer,
    TaskListQuerySerializer,
    TaskReopenSerializer,
    TaskSerializer,
    VolumeUploadedSerializer,
    VolumeUploadSerializer,
)

MANAGER = Role.MANAGER
REVIEWERS = (Role.REVIEWER, Role.MANAGER)


def project_for(request: Request, slug: str) -> Project:
    return get_visible(visible_projects(current_user(request)), slug=slug)


def task_rows(tasks: QuerySet[Task] | None = None) -> QuerySet[Task]:
    """``tasks`` (all tasks by default) with what TaskSerializer reads, in two queries."""
    # A correlated count, not a join + GROUP BY over every selected column: the latter costs
    # more than the rest of a claim.
    lesions = Lesion.objects.filter(task=OuterRef("pk")).order_by().values("task")
    return (
        (Task.objects.all() if tasks is None else tasks)
        .select_related("round__project", "series__volume", "series__study", "assignee", "reviewer")
        .prefetch_related(Prefetch("reviews", queryset=Review.objects.select_related("reviewer")))
        .annotate(lesion_count=Coalesce(Subquery(lesions.annotate(n=Count("pk")).values("n")), 0))
    )


def task_queryset(request: Request) -> QuerySet[Task]:
    """The tasks the signed-in user may see, ready to serialize."""
    return task_rows(Task.objects.visible_to(current_user(request)))


def task_data(pk: int) -> dict[str, Any]:
    """A task just acted on (so already checked as visible), as the API shows it."""
    return TaskSerializer(task_rows().get(pk=pk)).data


class MeView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "id": serializers.IntegerField(),
                "username": serializers.CharField(),
                "can_create_projects": serializers.BooleanField(),
            },
        )
    )
    def get(self, request: Request) -> Response:
        user = current_user(request)
        return Response(
            {
                "id": user.pk,
                "username": user.get_username(),
                "can_create_projects": user.has_perm("projects.add_project"),
            }
        )


class ProjectListView(generics.ListAPIView):
    serializer_class = ProjectSerializer

    def get_queryset(self) -> QuerySet[Project]:
        return visible_projects(current_user(self.request)).order_by("name")

    @extend_schema(request=ProjectCreateSerializer, responses={201: ProjectSerializer})
    def post(self, request: Request) -> Response:
        data = ProjectCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_create(user=current_user(request), **data.validated_data)
        return Response(
            ProjectSerializer(project, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )


class ProjectDetailView(APIView):
    @extend_schema(responses=ProjectSerializer)
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request, slug)
        return Response(ProjectSerializer(project, context={"request": request}).data)

    @extend_schema(request=ProjectUpdateSerializer, responses=ProjectSerializer)
    def patch(self, request: Request, slug: str) -> Response:
        project = project_for(request, slug)
        require_role(current_user(request), project, MANAGER)
        data = ProjectUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = services.project_update(project=project, **data.validated_data)
        return Response(ProjectSerializer(project, context={"request": request}).data)


class MemberListView(APIView):
    @extend_schema(responses=MembershipSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request, slug)
        require_role(current_user(request), project, MANAGER)
        members = project.memberships.select_related("user").order_by("user__username")
        return Response(MembershipSerializer(members, many=True).data)

    @extend_schema(request=MembershipSetSerializer, responses={201: MembershipSerializer})
    def post(self, request: Request, slug: str) -> Response:
        project = project_for(request, slug)
        require_role(current_user(request), project, MANAGER)
        data = MembershipSetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_set(
            project=project, user=data.validated_data["username"], role=data.validated_data["role"]
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        project = project_for(request, slug)
        require_role(current_user(request), project, MANAGER)
        membership = get_visible(Membership.objects.filter(project=project), pk=pk)
        services.membership_remove(membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VolumeUploadView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "VolumeUpload",
                {
                    "file": serializers.FileField(),
                    "labels": serializers.FileField(
                        required=False, help_text="a label map on the image's grid"
                    ),
                    "description": serializers.CharField(
                        max_length=DESCRIPTION_CHARS, required=False
                    ),
                },
            )
        },
        responses={201: VolumeUploadedSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        """Import one image (NIfTI, NRRD, MHA) or video file as a series and queue it as a task;
        with ``labels``, each value of that label map becomes a lesion with an imported mask."""
        project = project_for(request, slug)
        require_role(current_user(request), project, MANAGER)
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput("no file was uploaded", fields={"file": ["required"]})
        fields = VolumeUploadSerializer(data=request.POST)
        fields.is_valid(raise_exception=True)
        # The file's name stands in for a missing description: it is held to the same length.
        name = upload.name or "upload"
        description = fields.validated_data["description"] or Path(name).name[:DESCRIPTION_CHARS]
        labels = request.FILES.get("labels")
        made: LabelsImported | None = None
        if labels is None:
            imported = volume_import(
                project=project,
                file=upload,
                filename=name,
                description=description,
            )
        else:
            imported, made = volume_with_labels_import(
                project=project,
                file=upload,
                filename=name,
                labels=labels,
                labels_filename=labels.name or "labels",
                description=description,
            )
        warm_series_metadata(imported.series)  # now that it stays (labels may refuse it)
        body: dict[str, Any] = {
            "series": imported.series.pk,
            "volume": imported.volume.pk,
            "task": imported.task.pk if imported.task else None,
            "size": imported.volume.size,
            "spacing": imported.volume.spacing,
            "lesions": [lesion.pk for lesion in made.created] if made else [],
            # per label: its lesion's name and class, and the names no project class has
            "labels": made.to_dict() if made else None,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class PseudonymListView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "Pseudonym",
            {
                "kind": serializers.CharField(),
                "original": serializers.CharField(),
                "original_name": serializers.CharField(),
                "replacement": serializers.CharField(),
                "date_shift_days": serializers.IntegerField(),
                "time_shift_seconds": serializers.IntegerField(),
            },
            many=True,
        )
    )
    def get(self, request: Request, slug: str) -> Response:
        """The de-identification mapping of the project: managers only."""
        project = project_for(request, slug)
        require_role(current_user(request), project, MANAGER)
        rows = Pseudonym.objects.filter(project=project).order_by("kind", "id")
        fields = (
            "kind",
            "original",
            "original_name",
            "replacement",
            "date_shift_days",
            "time_shift_seconds",
        )
        return Response(list(rows.values(*fields)))


class RoundListView(APIView):
    @extend_schema(responses=RoundSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project = project_for(request, slug)
        return Response(RoundSerializer(project.rounds.order_by("number"), many=True).data)

    @extend_schema(request=None, responses={201: RoundSerializer})
    def post(self, request: Request, slug: str) -> Response:
        """Close the open round and open the next one."""
        project = project_for(request, slug)
        require_role(current_user(request), project, MANAGER)
        round_ = services.round_open(project=project, actor=current_user(request))
        return Response(RoundSerializer(round_).data, status=status.HTTP_201_CREATED)


class RoundExportView(APIView):
    @extend_schema(responses=RoundManifestSerializer)
    def get(self, request: Request, slug: str, number: int) -> Response:
        """The round's accepted cases with their final masks and provenance."""
        project = project_for(request, slug)
        require_role(current_user(request), project, MANAGER)
        round_ = get_visible(Round.objects.filter(project=project), number=number)
        return Response(round_manifest(round_))


class TaskListView(generics.ListAPIView):
    serializer_class = TaskSerializer

    @extend_schema(parameters=[TaskListQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Task]:
        project = project_for(self.request, self.kwargs["slug"])
        tasks = task_queryset(self.request).filter(round__project=project)
        params = query_params(self.request, TaskListQuerySerializer)
        if state := params.get("state"):
            tasks = tasks.filter(state=state)
        if params.get("mine"):
            tasks = tasks.filter(assignee_id=current_user(self.request).id)
        if (number := params.get("round")) is not None:
            tasks = tasks.filter(round__number=number)
        return tasks.order_by("-priority", "id")


class TaskNextView(APIView):
    @extend_schema(request=None, responses={200: TaskSerializer, 204: None})
    def post(self, request: Request, slug: str) -> Response:
        """Claim the next task (or get back my own open or rejected one); 204 if none waits."""
        project = project_for(request, slug)
        require_role(current_user(request), project, Role.ANNOTATOR, MANAGER)
        task = task_services.task_claim_next(user=current_user(request), project=project)
        if task is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(task_data(task.pk))


class TaskDetailView(APIView):
    @extend_schema(responses=TaskSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(TaskSerializer(get_visible(task_queryset(request), pk=pk)).data)


class TaskSubmitView(APIView):
    @extend_schema(request=None, responses=TaskSerializer)
    def post(self, request: Request, pk: int) -> Response:
        task = get_visible(task_queryset(request), pk=pk)
        task_services.task_submit(task=task, user=current_user(request))
        return Response(task_data(pk))


class TaskReviewView(APIView):
    @extend_schema(responses=ReviewSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        task = get_visible(task_queryset(request), pk=pk)
        return Response(ReviewSerializer(task.reviews.all(), many=True).data)

    @extend_schema(request=ReviewCreateSerializer, responses={201: ReviewSerializer})
    def post(self, request: Request, pk: int) -> Response:
        task = get_visible(task_queryset(request), pk=pk)
        require_role(current_user(request), task.round.project, *REVIEWERS)
        data = ReviewCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        review = task_services.task_review(
            task=task, reviewer=current_user(request), **data.validated_data
        )
        return Response(ReviewSerializer(review).data, status=status.HTTP_201_CREATED)


class TaskAssignView(APIView):
    @extend_schema(request=TaskAssignSerializer, responses=TaskSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Give the task to an annotator of the project (managers)."""
        task = get_visible(task_queryset(request), pk=pk)
        require_role(current_user(request), task.round.project, MANAGER)
        data = TaskAssignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task_services.task_assign(
            task=task, user=data.validated_data["user"], actor=current_user(request)
        )
        return Response(task_data(pk))


class TaskReleaseView(APIView):
    @extend_schema(request=None, responses=TaskSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Return an assigned task to the pool (managers)."""
        task = get_visible(task_queryset(request), pk=pk)
        require_role(current_user(request), task.round.project, MANAGER)
        task_services.task_release(task=task, actor=current_user(request))
        return Response(task_data(pk))


class TaskReopenView(APIView):
    @extend_schema(request=TaskReopenSerializer, responses=TaskSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Unlock an accepted task and send it back to its annotator (managers; audited)."""
        task = get_visible(task_queryset(request), pk=pk)
        require_role(current_user(request), task.round.project, MANAGER)
        data = TaskReopenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task_services.task_reopen(task=task, actor=current_user(request), **data.validated_data)
        return Response(task_data(pk))


class TaskAuditView(generics.ListAPIView):
    """The task's audit trail, newest first: for every member who can see the task."""

    serializer_class = AuditEventSerializer

    def get_queryset(self) -> QuerySet[AuditEvent]:
        task = get_visible(
            Task.objects.visible_to(current_user(self.request)), pk=self.kwargs["pk"]
        )
        return AuditEvent.objects.filter(task=task).select_related("actor").order_by("-id")


class ProjectAuditView(generics.ListAPIView):
    """The project's audit trail, newest first (managers)."""

    serializer_class = AuditEventSerializer

    @extend_schema(
        parameters=[
            AuditQuerySerializer,
            OpenApiParameter("action", str, enum=list(ACTIONS)),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[AuditEvent]:
        project = project_for(self.request, self.kwargs["slug"])
        require_role(current_user(self.request), project, MANAGER)
        events = audit_events(project)
        params = query_params(self.request, AuditQuerySerializer)
        if action := params.get("action"):
            events = events.filter(action=action)
        if username := params.get("user"):
            events = events.filter(actor__username=username)
        if (task := params.get("task")) is not None:
            events = events.filter(task_id=task)
        return events
