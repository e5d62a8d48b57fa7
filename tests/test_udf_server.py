"""The arrow-udf server answers Flight calls as RisingWave makes them, with the kernel's lists."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import ClickData, free_port

from recommender.serving.live_index import LiveIndex
from recommender.serving.udf_server import make_server
from recommender.sessions_io import read_sessions


@pytest.fixture(scope="module")
def index(click_data: ClickData) -> LiveIndex:
    idx = LiveIndex()
    idx.build_from_tsv(click_data["train"])
    return idx


@pytest.fixture(scope="module")
def client(index):
    port = free_port()
    server = make_server(index, "127.0.0.1", port)
    # the Flight server answers from construction on; serve() only blocks (main thread)
    c = flight.connect(f"grpc://127.0.0.1:{port}")
    c.wait_for_available(timeout=10)
    yield c
    server.shutdown()
    c.close()


def _call(client, name: str, sessions: list, ns: list) -> list:
    """One do_exchange as RisingWave does: a batch of arguments in, a batch of results out."""
    batch = pa.RecordBatch.from_arrays(
        [pa.array(sessions, pa.list_(pa.string())), pa.array(ns, pa.int32())],
        names=["items", "n"],
    )
    writer, reader = client.do_exchange(flight.FlightDescriptor.for_path(name))
    with writer:
        writer.begin(batch.schema)
        writer.write_batch(batch)
        writer.done_writing()
        table = reader.read_all()
    assert table.num_rows == len(sessions)
    return table.column(0).to_pylist()


def _test_sessions(click_data: ClickData, count: int) -> list[list[str]]:
    """The first 3 clicks of `count` test sessions (taken again from the start if too few)."""
    data = read_sessions(click_data["test"])
    sessions: dict[str, list[str]] = {}
    for s, i in zip(data.session_ids.tolist(), data.item_ids.tolist(), strict=True):
        sessions.setdefault(str(s), []).append(str(i))
    firsts = [items[:3] for items in sessions.values()]
    return [firsts[n % len(firsts)] for n in range(count)]


def test_schema_is_what_create_function_declares(client) -> None:
    info = client.get_flight_info(flight.FlightDescriptor.for_path("vmis_recommend"))
    assert info.total_records == 2  # number of arguments
    assert info.schema.types == [pa.list_(pa.string()), pa.int32(), pa.list_(pa.string())]
    scored = client.get_flight_info(flight.FlightDescriptor.for_path("vmis_recommend_scored"))
    result = scored.schema.types[2]
    assert [f.name for f in result] == ["item_ids", "scores"]
    assert result.field("scores").type == pa.list_(pa.float64())


def test_batch_equals_kernel_row_by_row(client, index, click_data) -> None:
    sessions = _test_sessions(click_data, 256)  # RisingWave's largest batch
    ns = [21] * len(sessions)
    got = _call(client, "vmis_recommend", sessions, ns)
    expected = [[i for i, _ in index.recommend(s, how_many=21)] for s in sessions]
    assert got == expected
    assert sum(1 for g in got if g) > len(got) // 2  # real answers, not empty lists
    scored = _call(client, "vmis_recommend_scored", sessions[:20], [5] * 20)
    for s, row in zip(sessions[:20], scored, strict=True):
        recs = index.recommend(s, how_many=5)
        assert row["item_ids"] == [i for i, _ in recs]
        assert row["scores"] == pytest.approx([sc for _, sc in recs])


def test_nulls_unknown_items_and_bad_n(client, index, click_data) -> None:
    known = _test_sessions(click_data, 1)[0]
    got = _call(
        client,
        "vmis_recommend",
        [None, [], ["no-such-item"], known, known, known],
        [10, 10, 10, None, 0, 10_000],
    )
    assert got[:3] == [[], [], []]
    assert len(got[3]) == len(got[4]) == len(index.recommend(known))  # default how_many
    assert got[5] == [i for i, _ in index.recommend(known, how_many=500)]


def test_calls_are_refused_until_the_index_is_built() -> None:
    index = LiveIndex()
    port = free_port()
    server = make_server(index, "127.0.0.1", port)
    c = flight.connect(f"grpc://127.0.0.1:{port}")
    try:
        c.wait_for_available(timeout=10)
        with pytest.raises(flight.FlightUnavailableError, match="index not built yet"):
            _call(c, "vmis_recommend", [["a"]], [3])
        index.build([("h1", ["a", "b"], 1.0), ("h2", ["a", "b"], 2.0)])
        assert _call(c, "vmis_recommend", [["a"]], [3]) == [["b"]]
    finally:
        server.shutdown()
        c.close()


@pytest.mark.e2e
def test_udf_server_command(sample_data: ClickData, tmp_path) -> None:
    """`flashrec udf-server --history` as a real process answers a Flight call."""
    import subprocess
    import sys

    from recommender.config import PROJECT_ROOT

    port = free_port()
    train = sample_data["train"]
    first_item = train.read_text().splitlines()[1].split("\t")[1]
    log = (tmp_path / "udf.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "recommender.cli", "udf-server", "--history", str(train),
         "--port", str(port)],
        cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        c = flight.connect(f"grpc://127.0.0.1:{port}")
        c.wait_for_available(timeout=60)
        got = _call(c, "vmis_recommend", [[first_item], None], [3, 3])
        assert len(got[0]) == 3 and got[1] == []
        c.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) is not None
        log.close()
