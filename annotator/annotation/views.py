from django.db.models import Prefetch, QuerySet
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.annotation import services
from annotator.annotation.masks import decode_mask, encode_nifti, encode_raw_gzip
from annotator.annotation.serializers import (
    EffortSerializer,
    LesionSerializer,
    LesionWriteSerializer,
    MaskDataQuerySerializer,
    MaskSaveSerializer,
    MaskVersionSerializer,
)
from annotator.core.parsers import JSONParser
from annotator.core.rest import current_user, get_visible, query_params
from annotator.models import Lesion, MaskVersion
from projects.models import Task

MASKS = Prefetch(
    "mask_versions", queryset=MaskVersion.objects.select_related("author_user", "author_model")
)


def lesion_queryset(request: Request) -> QuerySet[Lesion]:
    return (
        Lesion.objects.filter(task__in=Task.objects.visible_to(current_user(request)))
        .select_related("task__round__project", "task__series__volume")
        .prefetch_related(MASKS)
    )


def mask_queryset(request: Request) -> QuerySet[MaskVersion]:
    return MaskVersion.objects.filter(
        lesion__task__in=Task.objects.visible_to(current_user(request))
    ).select_related("lesion__task__series__volume", "author_user", "author_model")


class TaskLesionsView(APIView):
    @extend_schema(responses=LesionSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        task = get_visible(Task.objects.visible_to(current_user(request)), pk=pk)
        lesions = lesion_queryset(request).filter(task=task).order_by("id")
        return Response(LesionSerializer(lesions, many=True).data)

    @extend_schema(request=LesionWriteSerializer, responses={201: LesionSerializer})
    def post(self, request: Request, pk: int) -> Response:
        task = get_visible(
            Task.objects.visible_to(current_user(request)).select_related("series__volume"), pk=pk
        )
        data = LesionWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        lesion = services.lesion_create(
            task=task, user=current_user(request), **data.validated_data
        )
        lesion = lesion_queryset(request).get(pk=lesion.pk)
        return Response(LesionSerializer(lesion).data, status=status.HTTP_201_CREATED)


class TaskEffortView(APIView):
    @extend_schema(request=EffortSerializer, responses={201: EffortSerializer})
    def post(self, request: Request, pk: int) -> Response:
        """Active intervals and tool interactions recorded by the viewer."""
        task = get_visible(Task.objects.visible_to(current_user(request)), pk=pk)
        data = EffortSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.effort_record(task=task, user=current_user(request), **data.validated_data)
        return Response(data.data, status=status.HTTP_201_CREATED)


class LesionDetailView(APIView):
    @extend_schema(responses=LesionSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(LesionSerializer(get_visible(lesion_queryset(request), pk=pk)).data)

    @extend_schema(request=LesionWriteSerializer, responses=LesionSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        lesion = get_visible(lesion_queryset(request), pk=pk)
        data = LesionWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        services.lesion_update(lesion=lesion, user=current_user(request), **data.validated_data)
        return Response(LesionSerializer(lesion_queryset(request).get(pk=pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        lesion = get_visible(lesion_queryset(request), pk=pk)
        services.lesion_delete(lesion=lesion, user=current_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class LesionMasksView(APIView):
    parser_classes = [MultiPartParser, JSONParser]

    @extend_schema(responses=MaskVersionSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        """The lesion's mask history, oldest first."""
        lesion = get_visible(lesion_queryset(request), pk=pk)
        return Response(MaskVersionSerializer(lesion.mask_versions.all(), many=True).data)

    @extend_schema(
        request={"multipart/form-data": MaskSaveSerializer},
        responses={201: MaskVersionSerializer, 409: OpenApiResponse(description="parent stale")},
    )
    def post(self, request: Request, pk: int) -> Response:
        """Save an edited mask on top of ``parent``; 409 if someone saved in between."""
        lesion = get_visible(lesion_queryset(request), pk=pk)
        services.check_editable_by(lesion.task, current_user(request))
        data = MaskSaveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["mask"]
        mask = decode_mask(
            upload.read(),
            encoding=data.validated_data["encoding"],
            filename=upload.name or "mask",
            volume=lesion.task.series.volume,
        )
        parent_id = data.validated_data["parent"]
        parent = None
        if parent_id is not None:
            parent = get_visible(lesion.mask_versions.all(), pk=parent_id)
        version = services.mask_version_save(
            lesion=lesion,
            mask=mask,
            source=MaskVersion.Source.HUMAN,
            author=services.Author(user=current_user(request)),
            parent=parent,
        )
        return Response(MaskVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class MaskDetailView(APIView):
    @extend_schema(responses=MaskVersionSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(MaskVersionSerializer(get_visible(mask_queryset(request), pk=pk)).data)


class MaskDataView(APIView):
    @extend_schema(
        parameters=[MaskDataQuerySerializer],
        responses={(200, "application/octet-stream"): bytes},
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        """The voxels: ``raw-gzip`` (z*y*x uint8, shape in X-Mask-Shape) or ``nifti``."""
        params = query_params(request, MaskDataQuerySerializer)
        version = get_visible(mask_queryset(request), pk=pk)
        mask = services.mask_version_load(version)
        volume = version.lesion.task.series.volume
        if params["encoding"] == "nifti":
            response = HttpResponse(encode_nifti(mask, volume), content_type="application/gzip")
            response["Content-Disposition"] = f'attachment; filename="mask-{version.pk}.nii.gz"'
            return response
        response = HttpResponse(encode_raw_gzip(mask), content_type="application/octet-stream")
        response["X-Mask-Shape"] = ",".join(str(n) for n in mask.shape)
        response["Cache-Control"] = "private, max-age=31536000, immutable"
        return response
