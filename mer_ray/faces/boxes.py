"""`face_boxes.parquet`: the per-frame face boxes `mer-ray faces` and `crop: face` extraction write.

One row per sampled frame of a clip:

    name          clip name (the manifest's)
    frame         the frame's index in the video stream
    left, top, width, height   the box the frame is cropped around, in the video's pixels, before
                  the margin (smoothed over the clip; see mer_ray.faces.track)
    score         the detector's score for the kept face; NaN where none was found in that frame
    fallback      "none" (a face was found in this frame), "median" (none here: the clip's
                  median box), "centre" (no face in the clip: centre crop; every row of the clip)
    frame_width, frame_height   the video's size

The `face_boxes` option of extraction and pre-training reads this file (or the older per-clip CSV
`name,left,top,width,height`), so a corpus is detected once and reused: each decoded frame takes
the box recorded at the nearest frame, so another `num_frames` still works.
"""
from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mer_ray.corpus.media import BoxTrack, read_face_boxes as read_face_box_csv

from .track import FaceTrack

__all__ = ["COLUMNS", "box_cell", "box_cells", "parse_box_cell", "read_box_table", "read_face_boxes", "records_json",
           "records_table", "summarise", "track_records", "write_box_table"]

COLUMNS = ("name", "frame", "left", "top", "width", "height", "score", "fallback", "frame_width", "frame_height")
_SCHEMA = pa.schema([("name", pa.string()), ("frame", pa.int64()), ("left", pa.float64()), ("top", pa.float64()),
                     ("width", pa.float64()), ("height", pa.float64()), ("score", pa.float32()),
                     ("fallback", pa.string()), ("frame_width", pa.int32()), ("frame_height", pa.int32())])


def track_records(name: str, track: FaceTrack) -> pd.DataFrame:
    """A clip's track as rows of face_boxes.parquet."""
    count = len(track.indices)
    return pd.DataFrame({
        "name": [name] * count, "frame": track.indices.astype(np.int64),
        "left": track.boxes[:, 0], "top": track.boxes[:, 1], "width": track.boxes[:, 2], "height": track.boxes[:, 3],
        "score": track.scores.astype(np.float32), "fallback": list(track.fallback),
        "frame_width": np.full(count, track.frame_width, np.int32),
        "frame_height": np.full(count, track.frame_height, np.int32),
    }, columns=list(COLUMNS))


def records_json(records: pd.DataFrame) -> str:
    """A clip's rows as one JSON string (column → values; NaN as null): how they travel back
    from a Ray Data stage."""
    return json.dumps({c: [None if isinstance(v, float) and np.isnan(v) else v for v in records[c].tolist()]
                       for c in COLUMNS})


def records_table(cells) -> pd.DataFrame:
    """Rows of face_boxes.parquet from `records_json` strings ("" and None skipped). Parsed with
    `json`, not pandas, so that a clip named "00012" stays a string."""
    columns = {c: [] for c in COLUMNS}
    for cell in cells:
        if cell:
            for c, values in json.loads(cell).items():
                columns[c].extend(values)
    table = pa.table({c: pa.array(columns[c], t) for c, t in zip(_SCHEMA.names, _SCHEMA.types)}, schema=_SCHEMA)
    return table.to_pandas()


def write_box_table(path: str | Path, records: pd.DataFrame) -> Path:
    """Write `records` to `path`, replacing the rows of their clips and keeping every other clip
    already there (a rerun over new clips adds to the file). Atomic: written, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        old = read_box_table(path)
        records = pd.concat([old[~old["name"].isin(set(records["name"]))], records], ignore_index=True)
    records = records.sort_values(["name", "frame"], kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(records[list(COLUMNS)], schema=_SCHEMA, preserve_index=False)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_box_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no face boxes file; write it with `mer-ray faces --corpus C --out {path}`")
    table = pq.read_table(path).to_pandas()
    missing = set(COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected the face_boxes.parquet "
                         f"that `mer-ray faces` writes ({', '.join(COLUMNS)})")
    return table


def read_face_boxes(path: str | Path) -> dict[str, BoxTrack]:
    """name → the clip's boxes, from face_boxes.parquet (per frame) or a `name,left,top,width,height`
    CSV (one box per clip, used for every frame)."""
    path = Path(path)
    if path.suffix.lower() != ".parquet":
        return {name: BoxTrack(np.zeros(1, np.int64), np.asarray([box], np.float64))
                for name, box in read_face_box_csv(path).items()}
    table = read_box_table(path)
    bad = table[~(table["width"] > 0) | ~(table["height"] > 0)]
    if len(bad):
        row = bad.iloc[0]
        raise ValueError(f"{path}: clip {row['name']} frame {row['frame']}: width and height must be > 0")
    tracks = {}
    for name, rows in table.sort_values(["name", "frame"], kind="stable").groupby("name", sort=False):
        tracks[name] = BoxTrack(rows["frame"].to_numpy(np.int64),
                                rows[["left", "top", "width", "height"]].to_numpy(np.float64))
    return tracks


def box_cell(track: BoxTrack | None, margin: float) -> str | None:
    """A clip's stored boxes (and the margin to crop them with) as one dataset cell."""
    if track is None:
        return None
    return json.dumps({"frames": track.frames.tolist(), "boxes": track.boxes.tolist(), "margin": margin})


def box_cells(path: str | Path, names, margin: float) -> list[str | None]:
    """One `box_cell` per clip name (None: no box for it) from a face boxes file. Boxes from
    face_boxes.parquet are detector boxes and get `margin`; a CSV's are used as given."""
    tracks = read_face_boxes(path)
    margin = margin if Path(path).suffix.lower() == ".parquet" else 0.0
    return [box_cell(tracks.get(name), margin) for name in names]


def parse_box_cell(cell: str | None) -> tuple[BoxTrack, float] | None:
    if not cell:
        return None
    data = json.loads(cell)
    return BoxTrack(np.asarray(data["frames"], np.int64), np.asarray(data["boxes"], np.float64)), float(data["margin"])


def summarise(records: pd.DataFrame) -> Counter:
    """What `crop: face` did: clips with a face, frames per fallback, clips centre-cropped."""
    counts = Counter()
    if records.empty:
        return counts
    per_clip = records.groupby("name")["fallback"].agg(lambda f: "centre" if (f == "centre").all() else "face")
    counts["clips with a face"] = int((per_clip == "face").sum())
    counts["clips without a face (centre crop)"] = int((per_clip == "centre").sum())
    counts["frames with a face"] = int((records["fallback"] == "none").sum())
    counts["frames on the clip's median box"] = int((records["fallback"] == "median").sum())
    return counts
