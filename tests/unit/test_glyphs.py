"""builtin:glyphs is generated the same everywhere, balanced, listed, and free of flip-twin classes."""

import torch

from kdcore.data.builtin import BUILTIN_DATASETS, builtin_info, builtin_split
from kdcore.data.glyphs import PAIRS, PER_CLASS, glyph_classes


def test_glyphs_is_listed_with_its_splits_and_size():
    assert "glyphs" in BUILTIN_DATASETS
    info = builtin_info("glyphs")
    assert len(info["classes"]) == 2 * PAIRS and info["native_size"] == [3, 32, 32]
    assert info["splits"] == {split: 2 * PAIRS * count for split, count in PER_CLASS.items()}


def test_every_class_has_its_share_and_the_splits_differ():
    train, val = builtin_split("glyphs", "train"), builtin_split("glyphs", "val")
    assert torch.equal(torch.bincount(train.labels), torch.full((2 * PAIRS,), PER_CLASS["train"]))
    assert train.images.dtype == torch.uint8 and train.images.float().std() > 30
    assert not torch.equal(train.images[: len(val)], val.images)


def test_pairs_differ_by_a_dot_and_no_class_is_another_ones_mirror():
    classes = glyph_classes()
    assert len(set(classes)) == 2 * PAIRS
    for plain, dotted in zip(classes[::2], classes[1::2], strict=True):
        assert plain.edges == dotted.edges and plain.dot is None and dotted.dot is not None
    known = set(classes)
    assert all(c.mirrored() == c or c.mirrored() not in known for c in classes)


def test_generation_is_deterministic():
    from kdcore.data.glyphs import generate_glyphs

    images, labels, names = generate_glyphs("val")
    again = builtin_split("glyphs", "val")
    assert torch.equal(images, again.images) and torch.equal(labels, again.labels) and names == again.classes
