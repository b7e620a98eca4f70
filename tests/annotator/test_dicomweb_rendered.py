"""WADO-RS rendered and thumbnail resources: the grayscale pipeline, colour, parameters, access."""

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from django.test import Client
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_color_lut

from annotator.models import Series
from tests.annotator.test_dicomweb import store_series

pytestmark = pytest.mark.django_db


def sample(name: str) -> Path:
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return Path(path)


def instance_url(series: Series, sop: str | None = None) -> str:
    instance = series.instances.get(sop_instance_uid=sop) if sop else series.instances.first()
    assert instance is not None
    return (
        f"/dicomweb/studies/{series.study.study_instance_uid}/series/"
        f"{series.series_instance_uid}/instances/{instance.sop_instance_uid}"
    )


def image(response: Any) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)))


def linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out as the standard states it."""
    out = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255
    out = np.where(values <= center - 0.5 - (width - 1) / 2, 0, out)
    out = np.where(values > center - 0.5 + (width - 1) / 2, 255, out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.fixture
def viewer(workspace: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(workspace["annotator"])
    return client


def test_ct_rendered_through_rescale_and_the_requested_window(
    workspace: dict[str, Any], viewer: Client
) -> None:
    series = store_series(workspace["project"], [sample("CT_small.dcm")])
    ds = pydicom.dcmread(sample("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    url = f"{instance_url(series)}/rendered"

    response = viewer.get(url, {"window": "40,400,linear"}, HTTP_ACCEPT="image/png")
    assert response.status_code == 200, response.content[:200]
    assert response["Content-Type"] == "image/png"
    got = image(response)
    assert got.shape == (ds.Rows, ds.Columns)
    np.testing.assert_array_equal(got, linear(hu, 40, 400))
    assert 0 < got.mean() < 255  # a window inside the data's range: neither all black nor white

    # the accept query parameter wins over the header; another window gives other pixels
    other = viewer.get(
        url, {"window": "-600,1500", "accept": "image/png"}, HTTP_ACCEPT="image/jpeg"
    )
    assert other["Content-Type"] == "image/png"
    np.testing.assert_array_equal(image(other), linear(hu, -600, 1500))

    # no window asked for and none in the file: the frame's own range, end to end
    full = image(viewer.get(url, {"accept": "image/png"}))
    assert full.min() == 0 and full.max() == 255

    # JPEG is the default; a viewport scales the image to fit, keeping its aspect
    jpeg = viewer.get(url, {"viewport": "64,32", "quality": "70"})
    assert jpeg["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
    assert Image.open(io.BytesIO(jpeg.content)).size == (32, 32)


def test_the_files_window_and_monochrome1_inversion(
    workspace: dict[str, Any], viewer: Client, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(sample("MR_small_RLE.dcm"))  # RLE, Window 600 / 1600 in the file
    series = store_series(workspace["project"], [sample("MR_small_RLE.dcm")])
    got = image(viewer.get(f"{instance_url(series)}/rendered", {"accept": "image/png"}))
    np.testing.assert_array_equal(got, linear(ds.pixel_array.astype(float), 600, 1600))

    inverted = pydicom.dcmread(sample("CT_small.dcm"))
    inverted.PhotometricInterpretation = "MONOCHROME1"
    inverted.SeriesInstanceUID = inverted.SOPInstanceUID = pydicom.uid.generate_uid()
    path = tmp_path / "mono1.dcm"
    inverted.save_as(path, enforce_file_format=True)
    mono1 = store_series(workspace["project"], [path])
    plain = store_series(workspace["project"], [sample("CT_small.dcm")])
    params = {"accept": "image/png", "window": "40,400"}
    a = image(viewer.get(f"{instance_url(mono1)}/rendered", params))
    b = image(viewer.get(f"{instance_url(plain)}/rendered", params))
    np.testing.assert_array_equal(a, 255 - b)
    assert (a != b).any()


def test_colour_and_frames(workspace: dict[str, Any], viewer: Client, tmp_path: Path) -> None:
    rgb = pydicom.dcmread(sample("SC_rgb.dcm"))
    colour = store_series(workspace["project"], [sample("SC_rgb.dcm")])
    got = image(viewer.get(f"{instance_url(colour)}/rendered", {"accept": "image/png"}))
    np.testing.assert_array_equal(got, rgb.pixel_array)

    palette = pydicom.dcmread(sample("OT-PAL-8-face.dcm"), force=True)  # 16-bit palette
    palette.file_meta = pydicom.dataset.FileMetaDataset()
    palette.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    palette.StudyInstanceUID = palette.SeriesInstanceUID = pydicom.uid.generate_uid()
    palette.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    palette.SOPInstanceUID = pydicom.uid.generate_uid()
    palette.save_as(tmp_path / "palette.dcm", enforce_file_format=True)
    indexed = store_series(workspace["project"], [tmp_path / "palette.dcm"])
    got = image(viewer.get(f"{instance_url(indexed)}/rendered", {"accept": "image/png"}))
    rgb16 = apply_color_lut(palette.pixel_array, palette)
    assert rgb16.dtype == np.uint16
    np.testing.assert_array_equal(got, (rgb16 >> 8).astype(np.uint8))
    assert got.shape == (palette.Rows, palette.Columns, 3)

    mr = pydicom.dcmread(sample("emri_small.dcm"))  # 10 frames, no window in the file
    multi = store_series(workspace["project"], [sample("emri_small.dcm")])
    base = instance_url(multi)
    third = image(viewer.get(f"{base}/frames/3/rendered", {"accept": "image/png"}))
    frame = mr.pixel_array[2].astype(float)
    low, high = frame.min(), frame.max()
    expected = np.clip(np.rint(((frame - (low + high) / 2) / (high - low) + 0.5) * 255), 0, 255)
    np.testing.assert_array_equal(third, expected.astype(np.uint8))
    first = image(viewer.get(f"{base}/rendered", {"accept": "image/png"}))
    assert (first != third).any()  # the instance's rendered resource is its first frame
    assert viewer.get(f"{base}/frames/11/rendered").status_code == 404
    refused = viewer.get(f"{base}/frames/1,2/rendered")
    assert refused.status_code == 400 and "frames" in refused.json()


def test_thumbnails_at_every_level(
    workspace: dict[str, Any], viewer: Client, tmp_path: Path
) -> None:
    phantom = workspace["imported"].series  # 24 slices of 96 x 96
    study = phantom.study.study_instance_uid
    series_url = f"/dicomweb/studies/{study}/series/{phantom.series_instance_uid}"
    for url in (
        f"/dicomweb/studies/{study}/thumbnail",
        f"{series_url}/thumbnail",
        f"{instance_url(phantom)}/thumbnail",
        f"{instance_url(phantom)}/frames/1/thumbnail",
    ):
        response = viewer.get(url)
        assert response.status_code == 200, (url, response.content[:200])
        assert response["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(response.content)).size == (96, 96), url
    small = viewer.get(f"{series_url}/thumbnail", {"viewport": "48,48", "accept": "image/png"})
    assert Image.open(io.BytesIO(small.content)).size == (48, 48)
    # a thumbnail of a larger image is shrunk to 128 pixels, keeping its aspect
    large = pydicom.dcmread(sample("CT_small.dcm"))
    large.Rows, large.Columns = 200, 300
    large.PixelData = np.arange(200 * 300, dtype="<i2").tobytes()
    large.SeriesInstanceUID = large.SOPInstanceUID = pydicom.uid.generate_uid()
    path = tmp_path / "large.dcm"
    large.save_as(path, enforce_file_format=True)
    wide = store_series(workspace["project"], [path])
    thumbnail = viewer.get(f"{instance_url(wide)}/thumbnail")
    assert Image.open(io.BytesIO(thumbnail.content)).size == (128, 85)
    rendered = viewer.get(f"{instance_url(wide)}/rendered")
    assert Image.open(io.BytesIO(rendered.content)).size == (300, 200)
    # the series' thumbnail is its middle slice, not its first
    instances = list(phantom.instances.order_by("frame_offset"))
    middle = instances[len(instances) // 2].sop_instance_uid
    expected = viewer.get(f"{instance_url(phantom, middle)}/thumbnail", {"accept": "image/png"})
    series_png = viewer.get(f"{series_url}/thumbnail", {"accept": "image/png"})
    assert series_png.content == expected.content


def test_bad_parameters_and_access(
    workspace: dict[str, Any], viewer: Client, make_project: Any
) -> None:
    series = store_series(workspace["project"], [sample("CT_small.dcm")])
    url = f"{instance_url(series)}/rendered"
    for params, field in (
        ({"window": "abc,400"}, "window"),
        ({"window": "40"}, "window"),
        ({"window": "40,0"}, "window"),
        ({"window": "40,400,cubic"}, "window"),
        ({"window": "nan,400"}, "window"),
        ({"viewport": "99999,10"}, "viewport"),
        ({"viewport": "0,10"}, "viewport"),
        ({"viewport": "10"}, "viewport"),
        ({"quality": "0"}, "quality"),
        ({"quality": "high"}, "quality"),
    ):
        response = viewer.get(url, params)
        assert response.status_code == 400, params
        assert field in response.json(), (params, response.json())
    assert viewer.get(url, HTTP_ACCEPT="image/gif").status_code == 406
    assert viewer.get(url, {"accept": "image/gif"}).status_code == 406
    assert viewer.get(url, HTTP_ACCEPT="image/gif, image/*;q=0.5").status_code == 200

    foreign = store_series(make_project("gamma"), [sample("SC_rgb.dcm")])
    assert viewer.get(f"{instance_url(foreign)}/rendered").status_code == 404
    assert viewer.get(f"{instance_url(foreign)}/thumbnail").status_code == 404
    study = foreign.study.study_instance_uid
    assert viewer.get(f"/dicomweb/studies/{study}/thumbnail").status_code == 404
    assert Client().get(url).status_code in (401, 403)


def test_caps_and_undecodable_frames(
    workspace: dict[str, Any], viewer: Client, tmp_path: Path, monkeypatch: Any
) -> None:
    from annotator.imaging.dicomweb import rendered

    series = store_series(workspace["project"], [sample("CT_small.dcm")])  # 128 x 128
    monkeypatch.setattr(rendered, "MAX_RENDER_SAMPLES", 128 * 127)
    refused = viewer.get(f"{instance_url(series)}/rendered")
    assert refused.status_code == 400 and "frames" in refused.json()
    monkeypatch.setattr(rendered, "MAX_RENDER_SAMPLES", 128 * 128)
    assert viewer.get(f"{instance_url(series)}/rendered").status_code == 200

    # RLE data that does not decode: refused, not a server error
    broken = pydicom.dcmread(sample("MR_small_RLE.dcm"))
    # an RLE header of one segment where 16-bit pixels need two
    broken.PixelData = encapsulate([(1).to_bytes(4, "little") + b"\x40" + bytes(63) + bytes(40)])
    broken.SeriesInstanceUID = broken.SOPInstanceUID = pydicom.uid.generate_uid()
    broken.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
    damaged = store_series(workspace["project"], [tmp_path / "broken.dcm"])
    response = viewer.get(f"{instance_url(damaged)}/rendered")
    assert response.status_code == 406, response.content[:200]
