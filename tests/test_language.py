"""Language preference in canonical form (DESIGN.md §5): tags are compared by their CLDR
language-matching distance, extlang and macrolanguage forms folded, an exact match first.

Every expected order below is written out literally; each differs from what the old
primary-subtag comparison gave (noted beside it).
"""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from gateway.policy import PolicyDocument, PolicyInvalid, decide, explain, validate_document
from gateway.policy.decision import DecisionRequest
from gateway.policy.loader import load_config_dir
from gateway.policy.models import (
    MATCH_DISTANCE,
    language_distance,
    language_matches,
)

CONFIG = Path(__file__).resolve().parent.parent / "config"
NOON = datetime(2026, 6, 15, 12, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
CLEAR = {
    "weapons": False,
    "violence": False,
    "medical_emergency": False,
    "consent_to_transfer": True,
}

# Destination id → the languages it speaks, in the rule's chain order.
SPOKEN: dict[str, list[str]] = {
    "en-gb": ["en-GB"],
    "en": ["en"],
    "zh-cn": ["zh-CN"],
    "yue": ["yue"],
    "zh-hk": ["zh-HK"],
    "es": ["es"],
    "en-es": ["en", "es"],
    "es-mx": ["es-MX"],
}


def document(rules: list[dict[str, Any]] | None = None) -> PolicyDocument:
    data = copy.deepcopy(load_config_dir(CONFIG).model_dump(mode="json"))
    data["destinations"] = [
        {
            "id": dest_id,
            "kind": "988_center",
            "name": f"Center speaking {', '.join(languages)}",
            "number": f"+1206555{index:04d}",
            "org": f"org-{dest_id}",
            "languages": languages,
        }
        for index, (dest_id, languages) in enumerate(SPOKEN.items())
    ]
    data["psaps"][0]["fallback_destination"] = "en"
    data["policy"]["rules"] = rules or [{"id": "everyone", "chain": list(SPOKEN)}]
    return validate_document(data)


def request(language: str) -> DecisionRequest:
    return DecisionRequest.model_validate(
        {
            "psap_id": "kc-valleycom",
            "caller_type": "first_person",
            "screening": CLEAR,
            "language": language,
            "at": NOON,
        }
    )


ORDERS: list[tuple[str, list[str]]] = [
    # Cantonese: the Cantonese center, then Hong Kong Chinese (distance 10); Mandarin (64) is not
    # a speaker. Primary subtags gave yue, en-gb, en, zh-cn, zh-hk, ….
    ("yue", ["yue", "zh-hk", "en-gb", "en", "zh-cn", "es", "en-es", "es-mx"]),
    # The extlang form of the same language. Primary subtags ("zh") put Mandarin first and the
    # Cantonese center among the rest: zh-cn, zh-hk, en-gb, en, yue, ….
    ("zh-yue", ["yue", "zh-hk", "en-gb", "en", "zh-cn", "es", "en-es", "es-mx"]),
    # Hong Kong Chinese: only zh-HK speaks it (zh-CN is 54, yue 80). Primary subtags preferred
    # Mandarin: zh-cn, zh-hk, en-gb, en, yue, ….
    ("zh-HK", ["zh-hk", "en-gb", "en", "zh-cn", "yue", "es", "en-es", "es-mx"]),
    # Mandarin by its own code: zh-CN exactly (0); zh-HK is 54. Primary subtags ("cmn") matched
    # nothing: en-gb, en, zh-cn, ….
    ("cmn", ["zh-cn", "en-gb", "en", "yue", "zh-hk", "es", "en-es", "es-mx"]),
    # Mandarin as extlang with a script. Primary subtags also ranked zh-hk a speaker:
    # zh-cn, zh-hk, en-gb, en, yue, ….
    ("zh-cmn-Hans", ["zh-cn", "en-gb", "en", "yue", "zh-hk", "es", "en-es", "es-mx"]),
    # Latin American Spanish: es-MX (4) before es and en+es (5, tied: the rule's order).
    # Primary subtags kept the rule's order: es, en-es, es-mx, ….
    ("es-419", ["es-mx", "es", "en-es", "en-gb", "en", "zh-cn", "yue", "zh-hk"]),
    # English: the exact matches (0, tied: the rule's order) before en-GB (5). Primary subtags
    # kept en-gb first.
    ("en", ["en", "en-es", "en-gb", "zh-cn", "yue", "zh-hk", "es", "es-mx"]),
]


@pytest.mark.parametrize(("language", "expected"), ORDERS, ids=[tag for tag, _ in ORDERS])
def test_destination_order_by_canonical_language(language: str, expected: list[str]) -> None:
    decision = decide(document(), request(language), at=NOON, load={})
    assert [d.id for d in decision.destinations] == expected
    assert decision.reasons == ["rule:everyone"]


def test_the_trace_says_why_in_words() -> None:
    trace = explain(document(), request("zh-yue"), at=NOON, load={}).trace
    kept = {line.split(":", 1)[0]: line for line in trace if line.startswith("destination ")}
    assert kept["destination yue"].endswith("speaks zh-yue: yue, the same language)")
    assert kept["destination zh-hk"].endswith("speaks zh-yue: zh-HK at CLDR distance 10)")
    assert kept["destination zh-cn"].endswith(
        "does not speak zh-yue: nearest zh-CN at CLDR distance 64, over 25)"
    )
    assert (
        "language zh-yue: reordered to yue, zh-hk, en-gb, en, zh-cn, es, en-es, es-mx "
        "(speakers of zh-yue first, nearest first: yue same language, zh-hk distance 10; "
        "ties and the rest in the rule's order)"
    ) in trace


def test_no_reorder_line_when_the_order_holds() -> None:
    rules = [{"id": "everyone", "chain": ["en", "en-es", "zh-cn"]}]
    trace = explain(document(rules), request("en"), at=NOON, load={}).trace
    assert not any(line.startswith("language ") for line in trace)


HONG_KONG_THEN_MANDARIN = [
    {"id": "mandarin", "match": {"languages": ["zh-CN"]}, "chain": ["zh-cn"]},
    {"id": "hong-kong", "match": {"languages": ["zh-HK"]}, "chain": ["zh-hk", "yue"]},
    {"id": "anyone", "chain": ["en"]},
]


@pytest.mark.parametrize(
    ("language", "rule"),
    [
        ("cmn", "mandarin"),  # macrolanguage member; primary subtags: anyone
        ("zh-cmn-Hans", "mandarin"),  # extlang form
        ("zh-Hans", "mandarin"),
        ("zh", "mandarin"),
        ("yue", "hong-kong"),  # zh-HK serves Cantonese (10); primary subtags: anyone
        ("zh-yue", "hong-kong"),  # extlang form; primary subtags: mandarin
        ("zh-HK", "hong-kong"),  # primary subtags: mandarin
        ("zh-TW", "hong-kong"),  # Traditional Chinese (5)
        ("en", "anyone"),
    ],
)
def test_rule_match_languages_in_canonical_form(language: str, rule: str) -> None:
    decision = decide(document(HONG_KONG_THEN_MANDARIN), request(language), at=NOON, load={})
    assert decision.reasons == [f"rule:{rule}"]


def test_a_skipped_language_rule_says_how_far() -> None:
    trace = explain(document(HONG_KONG_THEN_MANDARIN), request("yue"), at=NOON, load={}).trace
    assert (
        "rule mandarin: skipped (language yue matches none of zh-CN: nearest zh-CN at CLDR "
        "distance 64, over 25)"
    ) in trace
    assert "rule hong-kong: matches" in trace


def test_distance_is_directional_and_bounded() -> None:
    assert MATCH_DISTANCE == 25
    assert language_distance("yue", "zh-HK") == 10
    assert language_distance("zh-HK", "yue") == 80
    assert language_distance("cmn", "zh-CN") == 0
    assert language_matches("zh-HK", "yue")
    assert not language_matches("yue", "zh-HK")
    assert not language_matches("zh-CN", "zh-HK")


def test_distances_are_cached_per_pair() -> None:
    language_distance.cache_clear()
    decide(document(), request("zh-yue"), at=NOON, load={})
    first = language_distance.cache_info()
    decide(document(), request("zh-yue"), at=NOON, load={})
    again = language_distance.cache_info()
    assert again.misses == first.misses
    assert again.hits > first.hits


@pytest.mark.parametrize("tag", ["zh-yue", "cmn", "zh-cmn-Hans", "es-419", "EN-us", "sgn-BE-FR"])
def test_well_formed_registered_tags_are_accepted(tag: str) -> None:
    assert request(tag).language == tag


@pytest.mark.parametrize(
    "tag", ["zz", "abcdefgh", "english please", "en--US", "x-klingon", "abcdefghi"]
)
def test_bad_caller_tags_are_rejected(tag: str) -> None:
    with pytest.raises(ValidationError) as info:
        request(tag)
    assert [e["loc"] for e in info.value.errors()] == [("language",)]


def test_bad_destination_and_rule_tags_are_rejected() -> None:
    data = copy.deepcopy(document().model_dump(mode="json"))
    data["destinations"][2]["languages"] = ["zh-CN", "zz"]
    data["policy"]["rules"][0]["match"] = {"languages": ["xx-YY"]}
    with pytest.raises(PolicyInvalid) as info:
        validate_document(data)
    assert info.value.errors == [
        {
            "path": "destinations.2.languages.1",
            "message": "'zz' is not a valid BCP 47 language tag (IANA subtag registry)",
        },
        {
            "path": "policy.rules.0.match.languages.0",
            "message": "'xx-YY' is not a valid BCP 47 language tag (IANA subtag registry)",
        },
    ]
