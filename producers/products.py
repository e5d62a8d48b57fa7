"""A synthetic fashion shop catalog: real-looking product names, categories and prices.

Deterministic for a seed. Categories include the seed's outerwear / bottoms / bags / tops /
denim; each category has its own nouns and a price range.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# category -> (nouns, low price, high price)
CATEGORIES: dict[str, tuple[tuple[str, ...], float, float]] = {
    "outerwear": (("Parka", "Trench Coat", "Puffer Jacket", "Overcoat", "Bomber", "Rain Jacket"),
                  79, 420),
    "bottoms": (("Chinos", "Wide-Leg Trousers", "Cargo Pants", "Pleated Skirt", "Joggers"),
                29, 140),
    "bags": (("Tote", "Crossbody Bag", "Backpack", "Weekender", "Belt Bag", "Clutch"), 25, 380),
    "tops": (("T-Shirt", "Oxford Shirt", "Blouse", "Tank Top", "Polo", "Henley"), 15, 95),
    "denim": (("Straight Jeans", "Skinny Jeans", "Denim Jacket", "Mom Jeans", "Denim Shorts"),
              39, 180),
    "knitwear": (("Cardigan", "Crewneck Sweater", "Turtleneck", "Knit Vest"), 35, 220),
    "dresses": (("Midi Dress", "Slip Dress", "Shirt Dress", "Wrap Dress", "Maxi Dress"), 39, 260),
    "shoes": (("Sneakers", "Chelsea Boots", "Loafers", "Sandals", "Ankle Boots"), 45, 310),
    "accessories": (("Scarf", "Beanie", "Leather Belt", "Sunglasses", "Cap", "Gloves"), 9, 120),
    "activewear": (("Leggings", "Sports Bra", "Running Shorts", "Track Jacket"), 19, 110),
}

ADJECTIVES = ("Relaxed", "Slim", "Oversized", "Cropped", "Classic", "Vintage", "Essential",
              "Tailored", "Lightweight", "Quilted", "Recycled", "Heritage", "Soft", "Structured")
MATERIALS = ("Wool", "Cotton", "Linen", "Leather", "Nylon", "Cashmere", "Corduroy", "Suede",
             "Organic Cotton", "Merino", "Canvas", "Fleece", "Denim", "Satin")
COLOURS = ("Black", "Navy", "Camel", "Olive", "Ecru", "Charcoal", "Burgundy", "Sand", "Sky Blue",
           "Forest Green", "Rust", "Ivory", "Grey Melange", "Chocolate")


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str
    price: float


def build_catalog(n_products: int = 5000, seed: int = 0) -> list[Product]:
    """`n_products` products over CATEGORIES (unequal category sizes), ids P000001..."""
    rng = random.Random(f"catalog-{seed}")
    names = list(CATEGORIES)
    weights = [rng.uniform(0.5, 2.0) for _ in names]
    products = []
    for i in range(n_products):
        category = rng.choices(names, weights)[0]
        nouns, low, high = CATEGORIES[category]
        name = (f"{rng.choice(ADJECTIVES)} {rng.choice(MATERIALS)} {rng.choice(nouns)}"
                f" - {rng.choice(COLOURS)}")
        price = round(rng.uniform(low, high), 0) - 0.01
        products.append(Product(f"P{i + 1:06d}", name, category, price))
    return products
