"""Write the small click files in tests/data: made-up sessions in the formats that
`flashrec replay` and `flashrec evaluate` read (no rows of any public data set).

Deterministic: `python tests/data/make_sample.py` rewrites the same files byte for byte.
Sessions are random walks over a graph where each item has a few likely next items, so
session-kNN finds real neighbours in them.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
SEED = 20240601
N_ITEMS = 120
FIRST_ITEM = 1001
START = 1_600_000_000  # epoch seconds of the first training click


def _walks(rng: random.Random, nxt: dict[int, list[int]], count: int) -> list[list[int]]:
    items = list(nxt)
    popular = items[:30]
    walks = []
    for _ in range(count):
        item = rng.choice(popular) if rng.random() < 0.6 else rng.choice(items)
        walk = [item]
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.85:
                item = rng.choices(nxt[item], weights=(6, 3, 1))[0]
            else:
                item = rng.choice(items)
            walk.append(item)
        walks.append(walk)
    return walks


def _sessions_tsv(walks: list[list[int]], first_id: int, start: int) -> str:
    lines = ["SessionId\tItemId\tTime"]
    for n, walk in enumerate(walks):
        for k, item in enumerate(walk):
            lines.append(f"{first_id + n}\t{item}\t{start + n * 600 + k * 30}.0")
    return "\n".join(lines) + "\n"


def _retailrocket(rng: random.Random, walks: list[list[int]]) -> str:
    rows = []
    for n, walk in enumerate(walks):
        visitor = n % 60 + 1  # sessions of one visitor are hours apart: new sessions
        for k, item in enumerate(walk):
            ms = (START + n * 600 + k * 30) * 1000 + rng.randrange(1000)
            roll = rng.random()
            if roll < 0.03:
                rows.append(f"{ms},{visitor},transaction,{item},{rng.randrange(1, 9999)}")
            elif roll < 0.11:
                rows.append(f"{ms},{visitor},addtocart,{item},")
            else:
                rows.append(f"{ms},{visitor},view,{item},")
    rng.shuffle(rows)  # the public file is not in time order either
    return "timestamp,visitorid,event,itemid,transactionid\n" + "\n".join(rows) + "\n"


def _rees46(rng: random.Random, walks: list[list[int]]) -> str:
    codes = ["", "electronics.smartphone", "appliances.kitchen.kettle", "apparel.shoes"]
    brands = ["", "acme", "globex", "initech"]
    rows = []
    for n, walk in enumerate(walks):
        user = 500_000_000 + n % 40
        session = f"{rng.getrandbits(64):016x}-{n:04d}" if rng.random() < 0.95 else ""
        for k, item in enumerate(walk):
            when = datetime.fromtimestamp(START + n * 600 + k * 30, UTC)
            kind = rng.choices(["view", "cart", "purchase"], weights=(90, 6, 4))[0]
            category = 2_053_013_552_000_000_000 + item % 7
            price = f"{(item % 97) + 0.99:.2f}"
            rows.append(f"{when:%Y-%m-%d %H:%M:%S} UTC,{kind},{item},{category},"
                        f"{codes[item % 4]},{brands[item % 3]},{price},{user},{session}")
    return ("event_time,event_type,product_id,category_id,category_code,brand,price,"
            "user_id,user_session\n" + "\n".join(rows) + "\n")


def _diginetica(rng: random.Random, walks: list[list[int]]) -> str:
    rows = []
    for n, walk in enumerate(walks):
        user = "NA" if rng.random() < 0.7 else str(n % 25 + 1)
        day = f"2016-05-{n % 20 + 1:02d}"
        frame = rng.randrange(100_000, 2_000_000)
        for item in walk:
            rows.append(f"{n + 1};{user};{item};{frame};{day}")
            frame += rng.randrange(10_000, 200_000)
    return "session_id;user_id;item_id;timeframe;eventdate\n" + "\n".join(rows) + "\n"


def main(out: Path = HERE) -> None:
    rng = random.Random(SEED)
    items = list(range(FIRST_ITEM, FIRST_ITEM + N_ITEMS))
    nxt = {i: rng.sample([j for j in items if j != i], 3) for i in items}  # likely next items
    train, test = _walks(rng, nxt, 400), _walks(rng, nxt, 100)
    files = {
        "sessions_train.tsv": _sessions_tsv(train, 1, START),
        "sessions_test.tsv": _sessions_tsv(test, 10_001, START + 400 * 600),
        "retailrocket_events.csv": _retailrocket(rng, train[:120]),
        "rees46_events.csv": _rees46(rng, test[:70]),
        "diginetica_item_views.csv": _diginetica(rng, train[120:200]),
    }
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
