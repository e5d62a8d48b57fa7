"""`flashrec evaluate`: the Serenade / session-rec protocol, its metrics and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ClickData
from reference_vmis import ReferenceVMIS
from typer.testing import CliRunner

from recommender.cli import app
from recommender.evaluation import EvalParams, evaluate
from recommender.sessions_io import SessionFileError, group_sessions, read_sessions
from udfs.vmisknn import VMISIndex

HEADER = "SessionId\tItemId\tTime\n"
runner = CliRunner()


def _write(path: Path, rows: list[tuple]) -> Path:
    path.write_text(HEADER + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def _metrics_by_hand(ref: ReferenceVMIS, test_path: Path, p: EvalParams) -> dict:
    """The protocol written out plainly, on the plain-Python reference."""
    rr = hits = prec = 0.0
    n = 0
    for _, items in group_sessions(read_sessions(test_path)):
        items = items.tolist()
        for t in range(1, len(items)):
            recs = ref.recommend(
                items[:t], k=p.k, how_many=p.how_many,
                max_items_in_session=p.max_items_in_session, idf_weighting=p.idf_weighting,
            )  # fmt: skip
            top = [item for item, _ in recs][: p.cutoff]
            if items[t] in top:
                rr += 1 / (top.index(items[t]) + 1)
                hits += 1
            prec += len(set(top) & set(items[t:])) / p.cutoff
            n += 1
    return {"mrr": rr / n, "hit_rate": hits / n, "precision": prec / n, "evaluations": n}


# evaluations (clicks after a session's first) in each data set's test file
EVALUATIONS = {"sample": 371, "shared": 931}


def test_metrics_equal_the_protocol_on_the_reference(click_data: ClickData) -> None:
    train_path = click_data["train"]
    test_path = click_data["test"]
    train = read_sessions(train_path)
    params = EvalParams(m=500, k=100, max_items_in_session=2, how_many=21, cutoff=20)
    index = VMISIndex.build(train.session_ids, train.item_ids, train.timestamps, m=params.m)
    got = evaluate(index, read_sessions(test_path), params)
    columns = (train.session_ids.tolist(), train.item_ids.tolist(), train.timestamps.tolist())
    want = _metrics_by_hand(ReferenceVMIS(zip(*columns, strict=True), m=500), test_path, params)
    assert got.evaluations == want["evaluations"] == EVALUATIONS[click_data.name]
    # ties between equal scores may reorder a target by a rank: allow a hair of difference
    assert got.mrr == pytest.approx(want["mrr"], abs=2e-3)
    assert got.hit_rate == pytest.approx(want["hit_rate"], abs=2e-3)
    assert got.precision == pytest.approx(want["precision"], abs=2e-3)
    assert 0.2 < got.mrr < got.hit_rate < 1


def test_metrics_on_a_small_case(tmp_path: Path) -> None:
    # history: a->b (twice, newer), a->c ; test session a, b, c
    train = _write(
        tmp_path / "train.tsv",
        [(1, "a", 1), (1, "b", 2), (2, "a", 3), (2, "b", 4), (3, "a", 5), (3, "c", 6)],
    )
    test = _write(tmp_path / "test.tsv", [(9, "b", 11), (9, "a", 10), (9, "c", 12), (8, "z", 1)])
    data = read_sessions(train)
    index = VMISIndex.build(data.session_ids, data.item_ids, data.timestamps, max_session_length=9)
    result = evaluate(index, read_sessions(test), EvalParams(cutoff=2, how_many=5))
    # session 9 sorted by time: a, b, c -> evaluations [a]->b and [a, b]->c; session 8 has none
    # [a]: sim 1 for all three; b (2 sessions, idf ln 3) outranks c (1 session, idf ln 6);
    #      a is the newest item, removed -> top [b, c]: rank 1, precision |{b,c} & {b,c}|/2 = 1
    # [a, b]: b removed; a (0.9*ln2*1.5*2 + 0.8*ln2*0.5) outranks c (0.8*ln6*0.5)
    #      -> top [a, c]: rank 2, precision |{a,c} & {c}|/2 = 0.5
    assert result.evaluations == 2
    assert result.mrr == 0.75 and result.hit_rate == 1.0 and result.precision == 0.75
    result = evaluate(index, read_sessions(test), EvalParams(cutoff=1, how_many=5))
    assert (result.mrr, result.hit_rate, result.precision) == (0.5, 0.5, 0.5)
    result = evaluate(index, read_sessions(test), EvalParams(cutoff=20, max_items_in_session=1))
    # [b] alone: its sessions hold only a besides b -> the target c is missed
    assert result.hit_rate == 0.5 and result.mrr == 0.5
    assert result.precision == pytest.approx((2 / 20 + 0 / 20) / 2)


def test_cli_json(click_data: ClickData) -> None:
    args = ["evaluate", "--train", str(click_data["train"]), "--test", str(click_data["test"])]
    result = runner.invoke(app, [*args, "--json", "--k", "100"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(out) == {"mrr", "hit_rate", "precision", "evaluations", "cutoff", "params"}
    assert out["evaluations"] == EVALUATIONS[click_data.name]
    assert out["cutoff"] == 20 and out["params"]["k"] == 100
    table = runner.invoke(app, [*args, "--cutoff", "10", "--quiet"])
    assert table.exit_code == 0, table.output
    assert "MRR@10" in table.stdout and "HitRate@10" in table.stdout


def test_cli_reports_an_empty_test_set(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.tsv", [(1, 5, 1.0), (1, 6, 2.0)])
    test = _write(tmp_path / "test.tsv", [(3, 5, 1.0)])  # one click: nothing to predict
    result = runner.invoke(app, ["evaluate", "--train", str(train), "--test", str(test), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["evaluations"] == 0 and out["mrr"] is None and out["precision"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (HEADER + "1\t5\t1.0\n1\t6\n", ":3: expected 3 tab-separated fields, got 2"),
        (HEADER + "1\t5\tnoon\n", ":2: Time is not a number: 'noon'"),
        (HEADER + "1\t5\tnan\n", ":2: Time is not finite"),
        ("Session,Item,Time\n1,2,3\n", ":1: header lacks SessionId, ItemId, Time"),
        ("", ":1: empty file"),
        (HEADER + "\t5\t1.0\n", ":2: empty SessionId or ItemId"),
    ],
)
def test_cli_malformed_file(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text(content)
    good = _write(tmp_path / "good.tsv", [(1, 5, 1.0), (1, 6, 2.0)])
    result = runner.invoke(app, ["evaluate", "--train", str(good), "--test", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}{message}" in result.output
    assert "Traceback" not in result.output


def test_cli_unreadable_files(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.tsv", [(1, 5, 1.0), (1, 6, 2.0)])
    missing = tmp_path / "missing.tsv"
    result = runner.invoke(app, ["evaluate", "--train", str(missing), "--test", str(good)])
    assert result.exit_code == 2 and f"{missing}: cannot open" in result.output
    binary = tmp_path / "binary.tsv"
    binary.write_bytes(HEADER.encode() + b"1\t\xff\xfe\t1.0\n")
    with pytest.raises(SessionFileError, match="not UTF-8"):
        read_sessions(binary)
    empty_train = _write(tmp_path / "empty.tsv", [])
    result = runner.invoke(app, ["evaluate", "--train", str(empty_train), "--test", str(good)])
    assert result.exit_code == 2 and "no clicks" in result.output


def test_reader_keeps_string_ids(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.tsv", [("u1", "sku-9", 1.5), ("u1", 7, 2)])
    data = read_sessions(path)
    assert data.session_ids.tolist() == ["u1", "u1"]
    assert data.item_ids.tolist() == ["sku-9", "7"]
    assert data.timestamps.tolist() == [1.5, 2.0]
