"""The blended recommender: its rule, the weight search's scorer, the co-occurrence table,
the offline evaluation of the blend and its sources."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from recommender import blend, blend_eval
from recommender.blend import BlendWeights
from recommender.blend_tuning import GRID, CandidateLog, Scorer, search, settings
from recommender.sessions_io import Sessions, read_sessions, split_by_time
from udfs.params import VmisParams

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def reference_blend(vmis, coview, trending, session, how_many, w: BlendWeights, popular=()):
    """The documented rule, written plainly: score per source, ties by first-met order."""
    score: dict = {}
    order: list = []

    def add(item, value):
        if item not in score:
            score[item] = 0.0
            order.append(item)
        score[item] += value

    top = vmis[0][1] if vmis else 0
    for item, s in vmis:
        add(item, w.vmis * (s / top if top > 0 else 0))
    for ranked, weight in ((coview, w.coview), (trending, w.trending)):
        best: dict = {}
        for r, item in enumerate(ranked):
            best[item] = max(best.get(item, 0), 1 / (1 + r))
        for item in ranked:
            if item in best:
                add(item, weight * best.pop(item))
    top = popular[0][1] if popular else 0
    for item, s in popular:
        add(item, w.popular * (s / top if top > 0 else 0))
    newest = session[-1] if session else None
    distinct = list(dict.fromkeys(reversed(session)))
    for age, item in enumerate(distinct):
        if item != newest or w.repeat_newest:
            add(item, w.repeat * w.decay**age)
        else:
            add(item, 0.0)
    score = {i: round(v, blend.ROUND) for i, v in score.items()}
    ranked = sorted(order, key=lambda i: (-score[i], order.index(i)))
    out = [(i, score[i]) for i in ranked if score[i] > 0 and (i != newest or w.repeat_newest)]
    return out[:how_many]


def random_case(rng: random.Random):
    items = list(range(30))
    vmis = sorted(((i, rng.choice([0.5, 1.0, 2.0, 3.0])) for i in rng.sample(items, 8)),
                  key=lambda p: -p[1])  # fmt: skip
    popular = sorted(((i, rng.choice([0.1, 0.2, 0.4])) for i in rng.sample(items, 5)),
                     key=lambda p: -p[1])  # fmt: skip
    return (vmis, rng.sample(items, rng.randint(0, 6)), rng.sample(items, rng.randint(0, 6)),
            [rng.choice(items) for _ in range(rng.randint(1, 6))]), popular  # fmt: skip


WEIGHTS = [
    BlendWeights(),
    BlendWeights(coview=1.0, trending=0.25, repeat=0.25, decay=0.8),
    BlendWeights(coview=0.0, trending=0.1, repeat=2.0, repeat_newest=True),
    BlendWeights(vmis=0.0, coview=1.0),
    BlendWeights(trending=0.0, popular=1.0),
    BlendWeights(coview=0.25, popular=0.5, repeat=0.5, decay=0.5),
]


@pytest.mark.parametrize("w", WEIGHTS)
def test_blend_follows_its_rule(w: BlendWeights) -> None:
    rng = random.Random(1)
    for _ in range(300):
        case, pop = random_case(rng)
        got = blend.blend(*case, 10, w, popular=pop)
        want = reference_blend(*case, 10, w, pop)
        assert [i for i, _ in got] == [i for i, _ in want], case
        assert np.allclose([s for _, s in got], [s for _, s in want])


def test_blend_never_offers_the_newest_item_unless_asked() -> None:
    vmis, coview, trending, session = [(1, 1.0)], [5, 2], [5, 3], [4, 5]
    assert 5 not in [i for i, _ in blend.blend(vmis, coview, trending, session, 10)]
    w = BlendWeights(repeat=1.0, repeat_newest=True)
    assert 5 in [i for i, _ in blend.blend(vmis, coview, trending, session, 10, w)]
    assert blend.blend([], [], [], [], 10) == []
    assert 1 not in [i for i, _ in blend.blend(vmis, coview, trending, session, 10,
                                               exclude=[1])]  # fmt: skip


def test_weights_parse_and_refuse() -> None:
    w = BlendWeights.parse("coview=2, repeat=0.5,repeat_newest=true")
    assert (w.coview, w.repeat, w.repeat_newest, w.vmis) == (2.0, 0.5, True, 1.0)
    assert BlendWeights.parse(w.text()) == w
    assert BlendWeights.parse("popular=1,focus=0.7").focus == 0.7
    assert BlendWeights.parse("sale_home=0.5").sale_home == 0.5
    for bad in ("nope=1", "coview", "coview=x", "coview=-1", "trending=nan", "focus=1.5",
                "sale_home=2"):
        with pytest.raises(ValueError, match="blend weights"):
            BlendWeights.parse(bad)


def test_the_search_scores_each_setting_as_the_blend_ranks() -> None:
    """The vectorised scorer gives every question the rank `blend` gives its target."""
    rng = random.Random(2)
    log = CandidateLog()
    cases = []
    for _ in range(400):
        case, pop = random_case(rng)
        target = rng.choice(range(30))
        log.add(*case, target, pop)
        cases.append((case, pop, target))
    scorer = Scorer(log, cutoff=10)
    for w in settings()[::97] + WEIGHTS:
        ranks = scorer.ranks(w)
        for (case, pop, target), rank in zip(cases, ranks.tolist(), strict=True):
            top = [i for i, _ in blend.blend(*case, 10, w, popular=pop)]
            assert rank == (top.index(target) + 1 if target in top else 0), (w, case, target)


def test_popular_is_the_chance_of_the_next_view_under_a_home_category() -> None:
    """score = (1 - f)·share + f·P(home = category)·share in the category, P(home) from the
    categories' shares and the session's items, over trending_by_category's rows summed by
    window (written out by hand here)."""
    rows = [("shoes", "s1", 6.0, 0), ("shoes", "s1", 2.0, 300), ("shoes", "s2", 4.0, 0),
            ("bags", "b1", 20.0, 0), ("bags", "b2", 8.0, 0)]  # fmt: skip
    table = blend.trending_table(rows)
    assert table.by_category["shoes"] == [("s1", 8.0), ("s2", 4.0)]
    assert [p for p, _, _ in table.overall] == ["b1", "b2", "s1", "s2"] and table.total == 40
    # two items in shoes (share 0.3), one in bags (0.7), f = 0.5
    odds_shoes, odds_bags = 0.3 * (1 + 0.5 / (0.5 * 0.3)) ** 2, 0.7 * (1 + 0.5 / (0.5 * 0.7))
    home_shoes = odds_shoes / (odds_shoes + odds_bags)
    homes = dict(blend.home_categories(table, ["shoes", "shoes", "bags"], 0.5))
    assert homes["shoes"] == pytest.approx(home_shoes) and sum(homes.values()) == pytest.approx(1)
    got = blend.popular(table, ["shoes", "shoes", "bags"], 10, focus=0.5)
    want = {"s1": 0.5 * 8 / 40 + 0.5 * home_shoes * 8 / 12,
            "b1": 0.5 * 20 / 40 + 0.5 * (1 - home_shoes) * 20 / 28,
            "s2": 0.5 * 4 / 40 + 0.5 * home_shoes * 4 / 12,
            "b2": 0.5 * 8 / 40 + 0.5 * (1 - home_shoes) * 8 / 28}  # fmt: skip
    assert dict(got) == pytest.approx(want)
    assert [p for p, _ in got] == ["s1", "b1", "s2", "b2"]  # 0.356, 0.333, 0.178, 0.133
    # no items: the categories' own shares; the left-out item never; focus 1: only the
    # session's categories; nothing trending: nothing
    assert [p for p, _ in blend.popular(table, [], 10, 0.5, leave_out="b1")] == ["b2", "s1", "s2"]
    assert [p for p, _ in blend.popular(table, ["shoes"], 10, focus=1.0)] == ["s1", "s2"]
    assert blend.popular(blend.trending_table([]), ["shoes"], 10, 0.5) == []


def test_popular_equals_scoring_every_product() -> None:
    """`popular` scores only what can make the list; every product scored by the formula
    gives the same top list (distinct engagements, so no ties), with and without a surge."""
    from recommender.surge import day_before, from_surge, sale_chance, surge

    rng = random.Random(5)
    for _ in range(200):
        cats = [f"c{i}" for i in range(rng.randint(1, 40))]
        rows = [(rng.choice(cats), f"p{i}", rng.uniform(1, 100), 0)
                for i in range(rng.randint(1, 400))]  # fmt: skip
        as_listed = blend.trending_table(rows)
        category_of = {p: c for c, p, _, _ in rows}
        before = day_before({f"p{i}": rng.randint(0, 30) for i in range(400)})
        items = [f"p{rng.randrange(400)}" for _ in range(rng.randint(0, 6))]
        # sessions now: products the trending rows list and others
        found = surge({f"p{i}": rng.uniform(0, 60) for i in range(rng.randint(1, 500))}, before)
        session = [category_of.get(p) or rng.choice([None, *cats]) for p in items]
        focus, how_many = rng.choice([0.2, 0.5, 0.8]), rng.choice([5, 20])
        sale_focus, sale_home = rng.choice([0.0, 0.5, 0.8]), rng.choice([0.0, 0.5, 1.0])
        came = sale_chance(found, items, sale_focus)
        sale = sale_focus * came
        # a surge session's other views elsewhere than its home categories
        away = came * (1 - sale_focus) * (1 - sale_home) if found.share and sale_focus else 0.0
        evidence, table = None, as_listed
        if found.share and sale_focus > 0:  # the engagement without the surge's part as given
            totals: dict[str, dict[str, float]] = {}
            for c, p, e, _ in rows:
                if e * found.kept.get(p, 1.0) > 0:
                    totals.setdefault(c, {})[p] = e * found.kept.get(p, 1.0)
            table = blend.trending_table((c, p, e, 0) for c, per in totals.items()
                                         for p, e in per.items())  # fmt: skip
            evidence = [(1 - x) * (1 - away / (1 - sale)) for x in from_surge(found, items, sale)]
        homes = dict(blend.home_categories(table, session, focus, evidence)
                     [: blend.HOME_CATEGORIES])  # fmt: skip
        score = {}
        for category, per in table.by_category.items():
            for rank, (product, e) in enumerate(per):
                overall = (1 - focus) * e / table.total
                listed = category in homes and rank < blend.POPULAR_PER_CATEGORY
                score[product] = (1 - sale - away) * (overall + (
                    focus * homes[category] * e / table.category_total[category]
                    if listed else 0)) + away * e / table.total + (
                    sale * found.share.get(product, 0.0))  # fmt: skip
        for product, in_surge in found.share.items():  # surging, not in the trending rows
            score.setdefault(product, sale * in_surge)
        want = sorted(score, key=lambda p: -score[p])
        top200 = {p for p, _, _ in table.overall[: blend.POPULAR_GLOBAL]}
        want = [p for p in want if p in top200 or (table.by_category and any(
            p in dict(table.by_category[c][: blend.POPULAR_PER_CATEGORY]) for c in homes))
            or (sale > 0 and p in found.share)]  # fmt: skip
        leave = rng.choice([None, *want[:3]])  # the session's newest item, left out
        got = [p for p, _ in blend.popular(table, session, how_many, focus, leave_out=leave,
                                           items=items, surge=found, sale_focus=sale_focus,
                                           sale_home=sale_home)]
        assert got == [p for p in want if p != leave][:how_many]


def test_search_puts_the_best_setting_first() -> None:
    log = CandidateLog()
    # the target is always the session's second newest item: repeats win
    for n in range(50):
        log.add([(100 + n, 1.0)], [200], [300], [7, 8, 9], 8)
    results = search(log, cutoff=5)
    best = results[0]
    assert best.weights.repeat > 0 and best.mrr == 1.0
    # no popular candidates in the log: its weights are not searched (the same settings as
    # a grid without the source)
    assert len(results) == len(settings({**GRID, "popular": (0.0,)})) < len(settings())


def test_cooccurrence_counts_sessions_per_pair() -> None:
    sessions = [[1, 2, 3], [2, 1], [1, 2, 2], [3, 1], [3, 1, 4], [4]]
    table = blend.cooccurrence(sessions, min_sessions=2, how_many=5)
    # pairs in >= 2 sessions: (1,2) in 3 sessions, (1,3) in 3; (2,3) in 1; (1,4),(3,4) in 1
    assert table == {1: [2, 3], 2: [1], 3: [1]}
    rng = random.Random(3)
    sessions = [[rng.randrange(12) for _ in range(rng.randint(1, 6))] for _ in range(300)]
    table = blend.cooccurrence(sessions, min_sessions=3, how_many=50)
    counts: dict = {}
    for s in sessions:
        for a, b in itertools.permutations(set(s), 2):
            counts[(a, b)] = counts.get((a, b), 0) + 1
    for a in range(12):
        want = [b for (x, b), n in counts.items() if x == a and n >= 3]
        assert sorted(table.get(a, [])) == sorted(want)
        got_counts = [counts[(a, b)] for b in table.get(a, [])]
        assert got_counts == sorted(got_counts, reverse=True)


def test_trending_lists_sum_the_windows_and_fill_keeps_order() -> None:
    rows = [("shoes", "a", 5.0, 1), ("shoes", "b", 4.0, 1), ("shoes", "b", 3.0, 2),
            ("bags", "c", 1.0, 2)]  # fmt: skip
    lists = blend.trending_lists(rows)
    assert lists == {"shoes": ["b", "a"], "bags": ["c"]}
    assert blend.in_categories(lists, ["bags", "shoes"], 2) == ["c", "b"]
    assert blend.fill([1, 2], [2, 3, 4], 3) == [1, 2, 3]


def _sessions(rows: list[tuple[int, int, float]]) -> Sessions:
    s, i, t = zip(*rows, strict=True)
    return Sessions(np.asarray(s), np.asarray(i), np.asarray(t, dtype=np.float64))


def test_split_by_time_keeps_sessions_whole() -> None:
    rows = [(s, s * 10 + k, float(s * 100 + k)) for s in range(10) for k in range(3)]
    early, late = split_by_time(_sessions(rows), 0.2)
    assert set(late.session_ids.tolist()) == {8, 9}
    assert set(early.session_ids.tolist()) == set(range(8))
    assert len(early) + len(late) == 30


@pytest.mark.skipif(not (DATA / "serenade_example").is_dir(), reason="../shared/data missing")
def test_blend_evaluation_on_serenade_example() -> None:
    """VMIS-kNN's row equals `flashrec evaluate`'s figure; the blend with weights chosen on
    the validation split beats VMIS-kNN on the test split."""
    from recommender.evaluation import EvalParams, evaluate
    from udfs.vmisknn import VMISIndex

    d = DATA / "serenade_example"
    train, valid, test = (read_sessions(d / f) for f in ("train.txt", "valid.txt", "test.txt"))
    vmis = VmisParams()
    index = VMISIndex.build(train.session_ids, train.item_ids, train.timestamps, m=vmis.m)
    plain = evaluate(index, test, EvalParams.of(vmis))
    weights, min_sessions, _ = blend_eval.tune(train, valid, vmis, min_sessions=(3,))
    sources = blend_eval.Sources.build(train, vmis, 20, min_sessions)
    stats = blend_eval.summary(blend_eval.run(sources, test, weights), replicates=200)
    assert stats["vmis"]["mrr"]["value"] == pytest.approx(plain.mrr, abs=1e-4)
    assert stats["vmis"]["hit_rate"]["value"] == pytest.approx(plain.hit_rate, abs=1e-4)
    assert stats["blend"]["mrr"]["value"] > stats["vmis"]["mrr"]["value"]
    lo, hi = stats["blend"]["mrr"]["ci"]
    assert lo <= stats["blend"]["mrr"]["value"] <= hi


def test_evaluate_cli_scores_the_blend_of_a_raw_data_set(tmp_path: Path) -> None:
    """`flashrec evaluate --data --format diginetica --blend`: every model reported with an
    interval; a bad --blend-weights is exit 2 with the reason."""
    import json

    from typer.testing import CliRunner

    from recommender.cli import app

    rng = random.Random(4)
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    for s in range(400):
        base = rng.randrange(0, 40, 4)
        for k in range(rng.randint(2, 6)):
            item = base + rng.randrange(4) if rng.random() < 0.8 else rng.randrange(40)
            lines.append(f"{s};NA;{item};{1000 * k};2016-05-{1 + s // 20:02d}")
    path = tmp_path / "views.csv"
    path.write_text("\n".join(lines) + "\n")
    args = ["evaluate", "--data", str(path), "--format", "diginetica", "--blend", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["evaluations"] > 100 and out["blend"]["chosen_on"].startswith("validation")
    for model in blend_eval.MODELS:
        entry = out["blend"]["models"][model]["mrr"]
        assert entry["ci"][0] <= entry["value"] <= entry["ci"][1]
    bad = CliRunner().invoke(app, [*args, "--blend-weights", "coview=lots"])
    assert bad.exit_code == 2 and "coview needs a number" in bad.output
