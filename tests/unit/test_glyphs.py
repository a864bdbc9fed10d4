"""builtin:glyphs and builtin:glyphs128 are generated the same everywhere, balanced, listed, and free of flip-twin classes."""

import pytest
import torch

from kdcore.data.builtin import BUILTIN_DATASETS, builtin_info, builtin_split
from kdcore.data.glyphs import GLYPH_SETS, generate_glyphs, glyph_classes

NAMES = sorted(GLYPH_SETS)


@pytest.mark.parametrize("name", NAMES)
def test_a_glyph_set_is_listed_with_its_splits_and_size(name):
    assert name in BUILTIN_DATASETS
    glyph_set, info = GLYPH_SETS[name], builtin_info(name)
    assert len(info["classes"]) == 2 * glyph_set.pairs and info["native_size"] == [3, 32, 32]
    assert info["splits"] == {split: 2 * glyph_set.pairs * glyph_set.per_class(split) for split in ("train", "val")}


@pytest.mark.parametrize("name", NAMES)
def test_every_class_has_its_share_and_the_splits_differ(name):
    train, val = builtin_split(name, "train"), builtin_split(name, "val")
    glyph_set = GLYPH_SETS[name]
    assert torch.equal(torch.bincount(train.labels), torch.full((2 * glyph_set.pairs,), glyph_set.train_per_class))
    assert torch.equal(torch.bincount(val.labels), torch.full((2 * glyph_set.pairs,), glyph_set.val_per_class))
    assert train.images.dtype == torch.uint8 and train.images.float().std() > 30
    assert not torch.equal(train.images[: len(val)], val.images)


@pytest.mark.parametrize("name", NAMES)
def test_pairs_differ_by_a_dot_and_no_class_is_another_ones_mirror(name):
    classes = glyph_classes(GLYPH_SETS[name].pairs)
    assert len(set(classes)) == 2 * GLYPH_SETS[name].pairs
    for plain, dotted in zip(classes[::2], classes[1::2], strict=True):
        assert plain.edges == dotted.edges and plain.dot is None and dotted.dot is not None
    known = set(classes)
    assert all(c.mirrored() == c or c.mirrored() not in known for c in classes)


def test_the_larger_set_extends_the_smaller_one_class_for_class():
    small, large = glyph_classes(GLYPH_SETS["glyphs"].pairs), glyph_classes(GLYPH_SETS["glyphs128"].pairs)
    assert large[: len(small)] == small


@pytest.mark.parametrize("name", NAMES)
def test_generation_is_deterministic(name):
    images, labels, names = generate_glyphs("val", name)
    again = builtin_split(name, "val")
    assert torch.equal(images, again.images) and torch.equal(labels, again.labels) and names == again.classes
