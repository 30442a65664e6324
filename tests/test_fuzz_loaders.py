"""Bounded fuzzing of the image and HDF5 loaders: mutated files either load as valid input
or fail with InputError; never any other exception."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import SAMPLES
from defense import InputError, load_dataset, load_image, save_dataset

FUZZ = settings(max_examples=1200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _seed_files():
    face = Image.open(SAMPLES / "clean_13.png").convert("RGB")
    seeds = {}
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"):
        buffer = io.BytesIO()
        face.save(buffer, format=fmt)
        seeds[fmt] = buffer.getvalue()
    return seeds


SEEDS = _seed_files()


def _mutate(data, edits, cut):
    data = bytearray(data)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data[: max(1, int(len(data) * cut))])


@FUZZ
@given(fmt=st.sampled_from(sorted(SEEDS)),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
       cut=st.floats(0.05, 1.0))
def test_mutated_images_load_or_fail_cleanly(tmp_path_factory, fmt, edits, cut):
    path = tmp_path_factory.mktemp("fuzz") / "face.img"
    path.write_bytes(_mutate(SEEDS[fmt], edits, cut))
    try:
        pixels = load_image(path, warn=lambda message: None)
    except InputError:
        return
    assert pixels.shape == (55, 47, 3) and np.isfinite(pixels).all()
    assert pixels.min() >= 0 and pixels.max() <= 255


@pytest.fixture(scope="module")
def h5_seed(tmp_path_factory, sample_pixels):
    path = tmp_path_factory.mktemp("seed") / "seed.h5"
    save_dataset(path, sample_pixels[:4].astype(np.uint8), np.arange(4))
    return path.read_bytes()


@settings(FUZZ, max_examples=900)
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                      max_size=8),
       cut=st.floats(0.3, 1.0))
def test_mutated_hdf5_loads_or_fails_cleanly(tmp_path_factory, h5_seed, edits, cut):
    path = tmp_path_factory.mktemp("fuzz") / "data.h5"
    path.write_bytes(_mutate(h5_seed, edits, cut))
    try:
        data = load_dataset(path, num_classes=1283)
    except InputError:
        return
    assert data.x.shape[1:] == (55, 47, 3) and len(data.x) == len(data.y)
    assert data.y.min() >= 0 and data.y.max() < 1283
