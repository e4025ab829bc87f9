"""A generated English corpus for training and evaluating adapters: short, distinct sentences
about the things agent memories hold (preferences, tasks, facts, events), across twelve
topics. Written by the project and covered by its licence; deterministic for a seed.
"""

from __future__ import annotations

import random

__all__ = ["sentences"]

_TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "cooking": (["the chef", "my grandmother", "the user", "a food blogger", "the restaurant"],
                ["prefers", "cooked", "burned", "recommended", "tasted", "ordered"],
                ["spicy ramen", "sourdough bread", "a vegan curry", "grilled salmon", "lemon tart",
                 "mushroom risotto", "fresh pasta", "black bean soup"]),
    "finance": (["the analyst", "our CFO", "the client", "the startup", "the bank"],
                ["reported", "forecast", "questioned", "reduced", "approved", "audited"],
                ["quarterly revenue", "the loan rate", "operating costs", "the bond yield",
                 "a budget overrun", "the pension fund", "stock buybacks", "cash flow"]),
    "travel": (["the traveller", "my sister", "the tour guide", "the user", "a pilot"],
               ["booked", "cancelled", "visited", "recommended", "missed", "photographed"],
               ["a train to Vienna", "the night ferry", "a hostel in Lisbon", "the mountain pass",
                "a flight to Tokyo", "the old harbour", "a beach in Crete", "the desert road"]),
    "programming": (["the developer", "the CI server", "our team", "the linter", "a contributor"],
                    ["refactored", "broke", "deployed", "reviewed", "rewrote", "profiled"],
                    ["the login service", "a memory leak", "the database schema", "the unit tests",
                     "an API endpoint", "the build script", "a race condition", "the cache layer"]),
    "health": (["the doctor", "my trainer", "the patient", "a nurse", "the user"],
               ["prescribed", "recommended", "skipped", "measured", "tracked", "worried about"],
               ["blood pressure", "a morning run", "vitamin D", "sleep quality", "knee pain",
                "a flu shot", "daily stretching", "heart rate"]),
    "music": (["the band", "a violinist", "the user", "my neighbour", "the orchestra"],
              ["played", "recorded", "loves", "practised", "composed", "streamed"],
              ["a jazz standard", "the cello suite", "an old vinyl album", "a punk song",
               "the piano sonata", "a film score", "folk ballads", "drum loops"]),
    "weather": (["the forecast", "the farmer", "a meteorologist", "the radio", "our pilot"],
                ["warned about", "expected", "measured", "ignored", "predicted", "reported"],
                ["heavy snow", "a heat wave", "strong winds", "morning fog", "a thunderstorm",
                 "freezing rain", "a dry spell", "high humidity"]),
    "gardening": (["the gardener", "my father", "the user", "a neighbour", "the school"],
                  ["planted", "watered", "pruned", "harvested", "fertilised", "lost"],
                  ["the tomatoes", "a lemon tree", "spring bulbs", "the rose bed", "fresh basil",
                   "the apple orchard", "potato plants", "climbing beans"]),
    "astronomy": (["the telescope", "an astronomer", "the observatory", "a student", "the probe"],
                  ["observed", "photographed", "measured", "discovered", "tracked", "mapped"],
                  ["a distant galaxy", "the lunar eclipse", "Jupiter's moons", "a comet tail",
                   "the Andromeda nebula", "a supernova", "Saturn's rings", "a meteor shower"]),
    "sports": (["the striker", "our coach", "the referee", "the team", "a marathon runner"],
               ["scored", "trained for", "criticised", "won", "lost", "prepared for"],
               ["the final match", "a penalty kick", "the relay race", "the league title",
                "a hard tackle", "the winter olympics", "the semi-final", "a new record"]),
    "work": (["the manager", "the user", "my colleague", "the intern", "the board"],
             ["scheduled", "postponed", "prepared", "summarised", "approved", "forgot"],
             ["the weekly meeting", "a project deadline", "the hiring plan", "the annual report",
              "a client presentation", "the office move", "performance reviews", "the roadmap"]),
    "home": (["the landlord", "my partner", "the user", "the plumber", "our cat"],
             ["fixed", "broke", "cleaned", "painted", "replaced", "ignored"],
             ["the kitchen sink", "the living room wall", "a leaking roof", "the old sofa",
              "the washing machine", "a squeaky door", "the garden fence", "the heating system"]),
}
_WHEN = ["yesterday", "last week", "this morning", "on Friday", "in March", "every day",
         "twice a month", "after lunch", "before the holidays", "at night", "", ""]
_HOW = ["", "", "again", "carefully", "quickly", "without telling anyone", "with great care",
        "for the first time"]


def sentences(n: int = 3000, seed: int = 0) -> list[str]:
    """``n`` distinct sentences (at most about 50,000), in a seeded random order."""
    rng = random.Random(seed)
    found: dict[str, None] = {}
    topics = sorted(_TOPICS)
    attempts = 0
    while len(found) < n:
        attempts += 1
        if attempts > 50 * n + 10_000:
            raise ValueError(f"cannot make {n} distinct sentences")
        subjects, verbs, objects = _TOPICS[topics[attempts % len(topics)]]
        parts = [rng.choice(subjects), rng.choice(verbs), rng.choice(objects), rng.choice(_HOW),
                 rng.choice(_WHEN)]
        text = " ".join(p for p in parts if p)
        found.setdefault(text[0].upper() + text[1:] + ".", None)
    return list(found)
