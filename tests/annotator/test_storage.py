"""annotator.core.storage helpers on the local disk (S3: test_s3_storage.py)."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annotator.core import storage
from annotator.imaging import storage_keys


def test_local_path_lets_errors_of_the_block_through(media_root: Path) -> None:
    key = storage.save_file("a/b.bin", b"payload")
    with storage.local_path(key) as path:
        assert path.read_bytes() == b"payload"
    with pytest.raises(NotImplementedError), storage.local_path(key):
        raise NotImplementedError("raised by the caller, not by the storage")


def test_cleanup_on_error_removes_what_the_block_wrote(media_root: Path) -> None:
    with pytest.raises(RuntimeError), storage.cleanup_on_error([]) as written:
        written.append(storage.save_array("x/mask.npy.gz", np.ones((2, 3, 4), dtype=bool)))
        assert (media_root / written[0]).exists()
        raise RuntimeError("the database refused the row")
    assert not list(media_root.rglob("*.npy.gz"))


def test_arrays_round_trip(media_root: Path, settings: Any) -> None:
    array = np.random.default_rng(0).random((3, 4, 5)) > 0.5
    np.testing.assert_array_equal(storage.load_array(storage.save_array("m.npy.gz", array)), array)


def test_the_storage_key_layout() -> None:
    keys = storage_keys.series_keys("liver", "1.2.3/4 5")
    assert keys.prefix == "projects/liver/series/1.2.3_4_5"
    assert keys.original("a.dcm") == "projects/liver/series/1.2.3_4_5/original/a.dcm"
    assert keys.original_prefix == "projects/liver/series/1.2.3_4_5/original/"
    assert keys.volume == "projects/liver/series/1.2.3_4_5/volume.nii.gz"
    assert keys.colour == "projects/liver/series/1.2.3_4_5/colour.mha"
    assert keys.instance("9.8") == "projects/liver/series/1.2.3_4_5/instances/9.8.dcm"
    assert storage_keys.series_folder(keys.original_prefix) == keys.prefix
    assert storage_keys.key_part("x" * 70) == "x" * 64 and storage_keys.key_part("///") == "_"
    mask = storage_keys.mask_key("liver", 7)
    assert mask.startswith("projects/liver/masks/lesion-7/") and mask.endswith(".npy.gz")
    assert mask != storage_keys.mask_key("liver", 7)
