"""Reading ISIC folders: the real one, the newer export format, and every kind of bad metadata."""

import csv

import pytest

from edge_sca.errors import DataError
from edge_sca.isic import load_isic_folder, resolve_isic_dir


def write_meta(folder, rows, cols):
    with open(folder / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def link_images(src, dst, ids):
    for i in ids:
        (dst / f"{i}.jpg").symlink_to(src / f"{i}.jpg")


def test_real_folder_splits(isic_dir):
    folder = load_isic_folder(isic_dir)
    assert len(folder.records) == 13109
    counts = {s: len(folder.subset(s)) for s in ("train", "val", "test", "calibration")}
    assert counts == {"train": 11034, "val": 1625, "test": 450, "calibration": 513}
    lesions = {s: {r.lesion_id for r in folder.subset(s)} for s in ("train", "val", "test")}
    assert not (lesions["train"] & lesions["val"]) and not (lesions["train"] & lesions["test"])


def test_newer_export_with_indeterminate_and_no_split(isic_dir, tmp_path):
    ids = [f"ISIC_{i:07d}" for i in range(6)]
    link_images(isic_dir, tmp_path, ids)
    labels = ["Benign", "Malignant", "Indeterminate", "Benign", "Malignant", "Benign"]
    write_meta(tmp_path, [{"isic_id": i, "diagnosis_1": d, "lesion_id": "L1" if n < 3 else f"L{n}"}
                          for n, (i, d) in enumerate(zip(ids, labels, strict=True))],
               ["isic_id", "diagnosis_1", "lesion_id"])
    folder = load_isic_folder(tmp_path)
    assert folder.skipped == {"indeterminate": 1}
    assert [r.label for r in folder.records] == [0, 1, 0, 1, 0]
    by_lesion = {r.lesion_id: r.split for r in folder.records}
    assert {r.split for r in folder.records if r.lesion_id == "L1"} == {by_lesion["L1"]}  # grouped
    assert [r.split for r in load_isic_folder(tmp_path).records] == [r.split for r in folder.records]  # stable
    assert len(folder.subset("all")) == 5


def test_missing_column_is_named(tmp_path):
    write_meta(tmp_path, [{"image": "x"}], ["image"])
    with pytest.raises(DataError, match="missing column 'isic_id'"):
        load_isic_folder(tmp_path)


def test_missing_label_column(tmp_path):
    write_meta(tmp_path, [{"isic_id": "ISIC_0000000"}], ["isic_id"])
    with pytest.raises(DataError, match="benign_malignant"):
        load_isic_folder(tmp_path)


def test_unknown_label_names_row_and_skip_bad_counts(isic_dir, tmp_path):
    ids = ["ISIC_0000000", "ISIC_0000001"]
    link_images(isic_dir, tmp_path, ids)
    write_meta(tmp_path, [{"isic_id": ids[0], "benign_malignant": "benign"},
                          {"isic_id": ids[1], "benign_malignant": "maybe"}], ["isic_id", "benign_malignant"])
    with pytest.raises(DataError, match=r"line 3 \(ISIC_0000001\).*unknown label 'maybe'.*--skip-bad"):
        load_isic_folder(tmp_path)
    folder = load_isic_folder(tmp_path, skip_bad=True)
    assert len(folder.records) == 1 and folder.skipped == {"bad rows": 1}


def test_missing_image_names_file(tmp_path):
    write_meta(tmp_path, [{"isic_id": "ISIC_0000042", "benign_malignant": "benign"}], ["isic_id", "benign_malignant"])
    with pytest.raises(DataError, match="ISIC_0000042.jpg not found"):
        load_isic_folder(tmp_path)


def test_no_folder_says_how_to_download(tmp_path):
    with pytest.raises(DataError, match="isic image download"):
        resolve_isic_dir(tmp_path / "nowhere")
    with pytest.raises(DataError, match="metadata.csv"):
        load_isic_folder(tmp_path)


def test_conflicting_duplicate_ids_are_an_error_naming_them(isic_dir, tmp_path):
    ids = ["ISIC_0000000", "ISIC_0000001"]
    link_images(isic_dir, tmp_path, ids)
    rows = [{"isic_id": ids[0], "benign_malignant": "benign"}, {"isic_id": ids[1], "benign_malignant": "benign"},
            {"isic_id": ids[0], "benign_malignant": "malignant"}]
    write_meta(tmp_path, rows, ["isic_id", "benign_malignant"])
    for skip_bad in (False, True):
        with pytest.raises(DataError, match=r"1 ids listed twice with different labels: ISIC_0000000 \(lines 2, 4: "
                                            r"benign, malignant\)"):
            load_isic_folder(tmp_path, skip_bad=skip_bad)


def test_identical_duplicate_is_skipped_and_counted(isic_dir, tmp_path):
    link_images(isic_dir, tmp_path, ["ISIC_0000000"])
    write_meta(tmp_path, [{"isic_id": "ISIC_0000000", "benign_malignant": "benign"}] * 2,
               ["isic_id", "benign_malignant"])
    folder = load_isic_folder(tmp_path)
    assert len(folder.records) == 1 and folder.skipped == {"duplicate rows": 1}


@pytest.mark.parametrize("bad_id", ["../x", "/etc/passwd", "sub/ISIC_0000000", "a\\b", ".hidden", "ISIC 1"])
def test_ids_must_be_plain_names(tmp_path, bad_id):
    (tmp_path / "x.jpg").write_bytes(b"not read")
    write_meta(tmp_path, [{"isic_id": bad_id, "benign_malignant": "benign"}], ["isic_id", "benign_malignant"])
    for skip_bad in (False, True):
        with pytest.raises(DataError, match="not a plain ISIC-style name"):
            load_isic_folder(tmp_path, skip_bad=skip_bad, check_files=False)


def test_non_utf8_metadata_is_one_clear_line(tmp_path):
    (tmp_path / "metadata.csv").write_bytes(b"isic_id,benign_malignant\nISIC_0000000,b\xe9nign\n")
    with pytest.raises(DataError) as err:
        load_isic_folder(tmp_path)
    assert str(err.value).count("\n") == 0
    assert "line 2: not UTF-8 (byte 0xe9" in str(err.value) and "re-save the file as UTF-8" in str(err.value)


def test_empty_labels_are_unlabelled_not_dropped(isic_dir, tmp_path):
    ids = ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    link_images(isic_dir, tmp_path, ids)
    rows = [{"isic_id": ids[0], "benign_malignant": "benign"}, {"isic_id": ids[1], "benign_malignant": ""},
            {"isic_id": ids[2], "benign_malignant": " "}]
    write_meta(tmp_path, rows, ["isic_id", "benign_malignant"])
    training = load_isic_folder(tmp_path)
    assert len(training.records) == 1 and training.skipped == {"unlabelled": 2}
    replay = load_isic_folder(tmp_path, require_labels=False)
    assert [r.label for r in replay.records] == [0, None, None] and replay.unlabelled == 2
