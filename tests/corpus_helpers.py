"""Corpus builders shared by several test modules (a module of its own: `conftest` is
ambiguous once tests/slow/ has a conftest too)."""
from pathlib import Path  # noqa: F401


def messy_copy(corpus, root):
    """A copy of a MER 2024 corpus (media linked, not copied) with the bad rows a real one has:
    an unknown label, a valence out of range, a duplicated name, and a video in video-labeled/
    with no label row. Returns (root, {kind: clip name})."""
    import shutil

    import pandas as pd

    root.mkdir(parents=True)
    for item in corpus.iterdir():
        if item.is_dir() and item.name.startswith("video-"):
            (root / item.name).mkdir()
            for clip in item.iterdir():
                (root / item.name / clip.name).symlink_to(clip)
        elif item.is_dir():
            shutil.copytree(item, root / item.name, ignore=shutil.ignore_patterns("features"))
        else:
            shutil.copy(item, root / item.name)
    labels = pd.read_csv(root / "label-disdim.csv", dtype={"name": str})
    names = list(labels["name"])
    labels.loc[0, "discrete"] = "disgust"                 # not one of MER's six classes
    labels.loc[1, "valence"] = 7.5                        # outside [-5, 5]
    labels = pd.concat([labels, labels.iloc[[2]]], ignore_index=True)   # the same name twice
    labels.to_csv(root / "label-disdim.csv", index=False)
    pool = sorted((root / "video-unlabeled-with-test2noise").iterdir())[0]
    orphan = "sample_orphan"
    (root / "video-labeled" / f"{orphan}.mp4").symlink_to(pool.resolve())
    return root, {"bad-label": names[0], "bad-valence": names[1], "duplicate": names[2], "no-label": orphan}


def mertools_features(corpus, root, *, seed: int = 0):
    """A MERTools `features/` folder for a corpus: three `<model>-UTT` folders of `<name>.npy`
    vectors (audio, video and text by their names) that carry each clip's label (true label
    for labeled clips, truth for the others) plus noise, so the learners have something to learn."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    labels = pd.read_csv(corpus / "label-disdim.csv", dtype={"name": str})
    known = dict(zip(labels["name"], labels["discrete"]))
    for csv in sorted((corpus / "truth").glob("*.csv")):
        truth = pd.read_csv(csv, dtype={"name": str})
        known.update(dict(zip(truth["name"], truth["discrete"])))
    names = sorted({p.stem for folder in corpus.glob("video-*") for p in folder.glob("*.mp4")})
    classes = sorted(set(known.values()))
    for model, dim in (("chinese-hubert-large-UTT", 12), ("clip-vit-large-patch14-UTT", 10),
                       ("Baichuan-13B-Base-UTT", 8)):
        folder = root / model
        folder.mkdir(parents=True)
        centres = rng.normal(size=(len(classes), dim)).astype(np.float32)
        for name in names:
            vector = rng.normal(scale=1.5, size=dim).astype(np.float32)
            if name in known and known[name] in classes:
                vector += centres[classes.index(known[name])]
            np.save(folder / f"{name}.npy", vector)
    return root
