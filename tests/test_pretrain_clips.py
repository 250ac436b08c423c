"""MAE pre-training leaves the held-out test clips out unless asked (mer_ray.adapt.clips)."""
import pandas as pd
import pytest

from mer_ray.adapt import PretrainConfig
from mer_ray.adapt.clips import pretrain_clips, truth_folder


@pytest.fixture
def corpus(tmp_path):
    """A demo-style corpus: the test clips sit in the unlabeled pool, truth/test.csv names them."""
    names = [f"c{i}" for i in range(10)]
    split = ["train"] * 3 + ["unlabeled"] * 5 + ["test"] * 2
    manifest = pd.DataFrame({"name": names, "split": split, "video": [f"{n}.mp4" for n in names]})
    (tmp_path / "truth").mkdir()
    pd.DataFrame({"name": ["c6", "c7"], "discrete": ["happy", "sad"]}).to_csv(tmp_path / "truth" / "test.csv", index=False)
    pd.DataFrame({"name": ["c5"], "discrete": ["angry"]}).to_csv(tmp_path / "truth" / "test-noisy.csv", index=False)
    return tmp_path, manifest


def test_held_out_test_clips_are_left_out_by_default(corpus):
    root, manifest = corpus
    assert not PretrainConfig().transductive
    clips, left_out = pretrain_clips(manifest, "unlabeled", truth=truth_folder(root))
    assert list(clips["name"]) == ["c3", "c4"]     # c5 (noisy test), c6, c7 (test) left out
    assert left_out == 3
    clips, left_out = pretrain_clips(manifest, "all", truth=truth_folder(root))
    assert list(clips["name"]) == ["c0", "c1", "c2", "c3", "c4"]   # split "test" rows too
    assert left_out == 5


def test_transductive_keeps_them_only_when_asked(corpus):
    root, manifest = corpus
    clips, left_out = pretrain_clips(manifest, "unlabeled", truth=truth_folder(root), transductive=True)
    assert list(clips["name"]) == ["c3", "c4", "c5", "c6", "c7"] and left_out == 0
    assert len(pretrain_clips(manifest, "all", truth=root / "truth", transductive=True)[0]) == 10


def test_without_a_truth_folder_only_split_test_rows_are_held_out(tmp_path, corpus):
    _, manifest = corpus
    assert truth_folder(tmp_path / "elsewhere") is None
    clips, left_out = pretrain_clips(manifest, "all", truth=None)
    assert "c8" not in set(clips["name"]) and left_out == 2


def test_a_pool_of_test_clips_only_says_what_to_do(corpus):
    root, manifest = corpus
    only_test = manifest[manifest["name"].isin(["c6", "c7"])]
    with pytest.raises(ValueError, match="--transductive"):
        pretrain_clips(only_test, "unlabeled", truth=root / "truth")
