"""Generate the labelled retrieval set of ``benchmarks/bench_recall.py`` (seeded, deterministic).

Writes ``corpus.jsonl`` (one line per recorded item: a memory, knowledge item or
skill, with the instance that records it) and ``queries.jsonl`` (one line per
query, with the facts that answer it) beside this file::

    python benchmarks/recall_data/make_set.py            # rewrites both files
    python benchmarks/recall_data/make_set.py --check    # fails if they differ from a fresh run

The corpus is about 40 systems ("subjects") times 20 things one can know about
each ("predicates": maintenance window, owner, timeout, ...), plus skills,
plus background memories that answer no query. Every subject and predicate
has two vocabularies: the words an answer is written in and different words a
*paraphrase* query uses. The generator checks, with SQLite FTS5 and the same
tokenizer and query-term rules as the hub (``experience_sync.recall.fts``),
that a paraphrase query matches none of its answers' documents: BM25 cannot
find them at all, only meaning can.

Query categories (a query may be in one only; ``cross_instance`` is a flag):

- ``lexical``: worded like the answer (some of its words).
- ``paraphrase``: no content word (stem) in common with any answer.
- ``multi``: paraphrase-style, answered by 2 facts about one subject (recall@5
  counts the share of them in the top 5).
- ``distractor``: paraphrase-style, and the corpus holds an item made for it
  that shares more query words than the answer (which shares none) but is
  about something else.
- ``skill``: paraphrase-style, answered by a skill.
- ``cross_instance``: the asking instance never recorded the answer (another
  instance learned it).

Labels are fact ids; an item carries its fact id (``fact``), and a fact
recorded twice (two instances, in different words) is found through either.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "core" / "src"))

from experience_sync.recall.fts import match_expression  # noqa: E402

SEED = 20261101
INSTANCES = ["inst-a", "inst-b", "inst-c", "inst-d"]
_TOKENIZE = "porter unicode61 remove_diacritics 2"

# (answer phrase, paraphrase phrase): no word stem in common.
SUBJECTS: list[tuple[str, str]] = [
    ("the billing service", "the invoicing system"),
    ("the payments API", "the card charging endpoint"),
    ("the login page", "the sign-in screen"),
    ("the search cluster", "the lookup engine"),
    ("the staging database", "the pre-production datastore"),
    ("the mobile app", "the smartphone client"),
    ("the shipping label printer", "the parcel tag device"),
    ("the customer support inbox", "the helpdesk mailbox"),
    ("the nightly backup job", "the overnight snapshot task"),
    ("the CI pipeline", "the build server"),
    ("the Berlin office network", "the German branch LAN"),
    ("the VPN gateway", "the remote access tunnel"),
    ("the recommendation model", "the suggestion ranker"),
    ("the email newsletter", "the weekly mailing"),
    ("the checkout flow", "the purchase funnel"),
    ("the warehouse scanner", "the stockroom barcode reader"),
    ("the analytics dashboard", "the metrics charts"),
    ("the password reset form", "the lost-passphrase recovery wizard"),
    ("the Kubernetes cluster", "the container orchestration platform"),
    ("the message queue", "the event broker"),
    ("the translation service", "the localization utility"),
    ("the SSO provider", "the identity federation system"),
    ("the refund workflow", "the money-back procedure"),
    ("the image upload endpoint", "the photo submission route"),
    ("the chat widget", "the live conversation bubble"),
    ("the loyalty program", "the rewards scheme"),
    ("the tax calculator", "the VAT computation module"),
    ("the fraud detector", "the scam screening classifier"),
    ("the DNS records", "the domain name entries"),
    ("the Oslo print room", "the Norwegian copier area"),
    ("the HR portal", "the personnel website"),
    ("the London data center", "the UK server facility"),
    ("the inventory sync", "the stock level replication"),
    ("the video transcoder", "the media conversion worker"),
    ("the coupon codes", "the discount vouchers"),
    ("the audit log", "the compliance trail"),
    ("the Slack bot", "the team chat assistant"),
    ("the GPU nodes", "the graphics accelerator machines"),
    ("the feature flags", "the rollout toggles"),
    ("the geocoding API", "the address-to-coordinates lookup"),
]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Saturday", "Sunday"]
TEAMS = ["platform", "growth", "infra", "commerce", "data", "identity", "mobile", "ops"]
PEOPLE = ["Priya", "Marco", "Aiko", "Tomasz", "Fatima", "Diego", "Ingrid", "Kwame", "Lena", "Ravi"]
VAULTS = ["prod", "shared", "team", "legacy"]
TOOLS = ["Kibana", "Loki", "Splunk", "Graylog"]
LANGS = [("Go", "Bazel"), ("Rust", "Cargo"), ("Kotlin", "Gradle"), ("TypeScript", "esbuild"),
         ("Java", "Maven"), ("Elixir", "Mix")]
REGIONS = ["eu-west-1", "us-east-2", "ap-south-1", "eu-central-1"]

# name -> (kind, [answer templates], [paraphrase query templates], [lexical query templates]).
# {S}: the answer phrase; {Q}: the paraphrase phrase; {s}: the answer phrase without "the".
PREDICATES: dict[str, tuple[str, list[str], list[str], list[str]]] = {
    "maintenance": ("memory", [
        "{S} goes down for maintenance every {day} night.",
        "Every {day} night {S} is offline for planned maintenance.",
    ], ["When is {Q} unavailable for scheduled upkeep?",
        "At what time of week can't people reach {Q}?"],
        ["when does {s} go down for maintenance", "{s} maintenance night"]),
    "owner": ("memory", [
        "{S} is owned by the {team} team; page {person} for urgent issues.",
        "Ownership of {S} sits with the {team} team, and {person} is the contact for urgent issues.",
    ], ["Who is responsible for {Q}?", "Whom do I call if {Q} needs attention?"],
        ["who owns {s}", "{s} owner team"]),
    "timeout": ("memory", [
        "Calls to {S} time out after {n} seconds.",
        "{S} answers or times out within {n} seconds.",
    ], ["How long before requests against {Q} give up waiting?",
        "What is the wait limit on {Q} before it aborts?"],
        ["{s} timeout seconds", "calls to {s} time out"]),
    "retry": ("memory", [
        "If {S} returns a 503, retry with exponential backoff, at most {k} attempts.",
        "A 503 from {S} should be retried with exponential backoff, {k} attempts at most.",
    ], ["What should I do when {Q} keeps failing temporarily?",
        "How do we recover from transient errors from {Q}?"],
        ["retry {s} 503", "{s} exponential backoff"]),
    "rate_limit": ("knowledge", [
        "{S} allows at most {n} requests per minute per key.",
        "The rate limit of {S} is {n} requests per minute for each key.",
    ], ["How much traffic may one client send {Q}?",
        "What throttling applies to {Q} callers?"],
        ["{s} rate limit", "{s} requests per minute"]),
    "credentials": ("memory", [
        "The credentials for {S} are stored in the {vault} vault under {s_slug}/creds.",
        "Credentials of {S} are kept in the {vault} vault, path {s_slug}/creds.",
    ], ["Where do I find the secrets to access {Q}?",
        "Which safe holds the login material of {Q}?"],
        ["{s} credentials vault", "where are the credentials for {s}"]),
    "deploy_freeze": ("memory", [
        "Deploys to {S} are frozen on Fridays after {hour}.",
        "No deploys to {S} on Friday afternoons: the freeze starts at {hour}.",
    ], ["Can we ship changes to {Q} at the end of the week?",
        "Is releasing new software for {Q} allowed late in the workweek?"],
        ["deploy {s} friday", "{s} deploy freeze"]),
    "logs": ("memory", [
        "Logs of {S} go to {tool}, in the index {s_slug}-logs.",
        "{S} writes its logs to {tool} (index {s_slug}-logs).",
    ], ["Where can I read the diagnostic output of {Q}?",
        "How do I inspect what {Q} printed while running?"],
        ["{s} logs", "where do {s} logs go"]),
    "known_bug": ("memory", [
        "{S} double-counts orders when the cart holds more than {n} lines.",
        "Known bug: {S} counts orders twice once a cart has over {n} lines.",
    ], ["Is there a defect in {Q} with big baskets?",
        "Does {Q} misbehave with large purchases?"],
        ["{s} double counts orders", "{s} bug cart lines"]),
    "cost": ("memory", [
        "Running {S} costs about {n} dollars a month.",
        "{S} costs roughly {n} dollars every month to run.",
    ], ["What is the monthly spend for {Q}?", "How expensive is {Q} to operate?"],
        ["{s} cost per month", "how much does {s} cost"]),
    "answer_style": ("memory", [
        "Users asking about {S} prefer short answers with bullet points.",
        "When the question is about {S}, users like short bullet-point answers.",
    ], ["How should replies about {Q} be formatted?",
        "What tone and layout suit explanations regarding {Q}?"],
        ["{s} users prefer short answers", "{s} answers bullet points"]),
    "stack": ("knowledge", [
        "{S} is written in {lang} and built with {build}.",
        "{S}: the code is {lang}, the build tool {build}.",
    ], ["Which programming stack does {Q} use?",
        "What technology was {Q} implemented with?"],
        ["{s} written in", "{s} build tool"]),
    "region": ("knowledge", [
        "{S} runs in the {region} region only.",
        "{S} is deployed only to the {region} region.",
    ], ["Where is {Q} hosted geographically?", "In which cloud location does {Q} live?"],
        ["{s} region", "which region does {s} run in"]),
    "escalation": ("memory", [
        "Escalate {S} incidents to the on-call engineer after {n} minutes.",
        "An incident on {S} goes to the on-call engineer if unresolved after {n} minutes.",
    ], ["How quickly should problems with {Q} be handed to whoever is paged?",
        "When do trouble reports about {Q} move up the chain?"],
        ["escalate {s} incidents", "{s} incident on-call"]),
    "dependency": ("memory", [
        "{S} depends on {S2} and fails when it is down.",
        "Whenever {S2} is down, {S} fails too: it depends on it.",
    ], ["What upstream pieces does {Q} need to work?",
        "Which other components must be healthy for {Q}?"],
        ["{s} depends on", "{s} dependency"]),
    "version": ("knowledge", [
        "{S} must stay on version {v} until the migration finishes.",
        "Keep {S} on version {v}: the migration is not finished.",
    ], ["Can we upgrade {Q} now?", "Is it safe to move {Q} to a newer release?"],
        ["{s} version migration", "{s} upgrade version"]),
    "health": ("memory", [
        "The health check of {S} is /{s_slug}/healthz and it alerts after {n} failures.",
        "{S} has a health check at /{s_slug}/healthz; {n} failures in a row raise an alert.",
    ], ["How is {Q} watched for outages?", "What probe tells us {Q} is broken?"],
        ["{s} health check", "{s} healthz alert"]),
    "retention": ("knowledge", [
        "{S} keeps records for {n} days before deleting them.",
        "Records in {S} are deleted after {n} days.",
    ], ["How long is information held by {Q}?", "When does {Q} purge old data?"],
        ["{s} keeps records days", "{s} retention days"]),
    "runbook": ("memory", [
        "The runbook for {S} lives in the wiki under '{s} runbook'.",
        "See the wiki page '{s} runbook' for the runbook of {S}.",
    ], ["Where is the how-to guide for handling {Q}?",
        "Is there documentation explaining steps to fix {Q}?"],
        ["{s} runbook", "runbook wiki {s}"]),
    "capacity": ("memory", [
        "{S} handles {n} concurrent users before latency climbs.",
        "Past {n} concurrent users, {S} gets slow.",
    ], ["How much load can {Q} take?", "At what audience size does {Q} start lagging?"],
        ["{s} concurrent users", "{s} latency users"]),
}

# Multi-fact questions: (predicates answering it, paraphrase templates).
MULTI: list[tuple[tuple[str, str], list[str]]] = [
    (("timeout", "retry"), ["How should clients cope with {Q} being slow or erroring?"]),
    (("owner", "escalation"), ["Who gets involved when {Q} breaks, and how fast?"]),
    (("maintenance", "deploy_freeze"), ["When should nobody change or rely on {Q}?"]),
    (("credentials", "logs"), ["Where are the secrets and the diagnostic output of {Q} found?"]),
    (("region", "stack"), ["What technology is {Q} made with, and where is it hosted?"]),
]

# Skills: (name stem, category, context templates, paraphrase query templates).
SKILLS: list[tuple[str, str, list[str], list[str]]] = [
    ("restart", "ops", ["restarting {S} after it hangs", "restart {S} when health checks fail"],
     ["Which tool brings {Q} back after it freezes?"]),
    ("rotate_keys", "security", ["rotating leaked keys of {S}", "rotate credentials for {S}"],
     ["What can replace compromised secrets of {Q}?"]),
    ("scale_up", "ops", ["scaling {S} up before a traffic peak", "add capacity to {S}"],
     ["How do I give {Q} more horsepower ahead of a rush?"]),
    ("rollback", "release", ["rolling back a bad deploy of {S}", "revert {S} to the last release"],
     ["How to undo a broken rollout on {Q}?"]),
    ("flush_cache", "ops", ["flushing the cache of {S}", "clear stale cached entries in {S}"],
     ["How do I wipe outdated memoized results in {Q}?"]),
]

# Background: memories that answer no query.
_BG_WHO = ["Priya", "Marco", "a customer", "the user", "a new hire", "the manager", "Aiko",
           "a vendor", "the auditor", "Tomasz", "Fatima", "a contractor", "Diego", "Lena"]
_BG_VERB = ["asked about", "complained about", "praised", "wants a demo of", "reported confusion about",
            "requested a quote for", "shared feedback on", "scheduled a call about", "forgot about",
            "cancelled the meeting on"]
_BG_THING = ["the quarterly roadmap", "the holiday calendar", "the coffee machine", "parking spots",
             "the onboarding checklist", "expense reports", "the team offsite", "desk booking",
             "the brand guidelines", "conference tickets", "the mentoring program", "laptop refresh",
             "the annual survey", "travel insurance", "the design review", "standing desks",
             "the hackathon", "office plants", "the podcast", "name badges", "the lunch menu",
             "the bike shed", "printer paper", "the style guide", "the town hall", "gym passes",
             "the reading group", "visa letters", "the all-hands slides", "parental leave"]
_BG_TAIL = ["and wants an answer by {day}.", "during the {day} standup.", "in a long email.",
            "twice this week.", "after lunch on {day}.", "on the support call.", "in the forum.",
            "with a screenshot attached.", "and got no reply yet.", "while visiting the {city} office."]
_CITIES = ["Lisbon", "Toronto", "Nairobi", "Osaka", "Lima", "Krakow", "Austin", "Dublin", "Pune"]

# Frames of distractors: they carry the query's words, but answer nothing.
_DISTRACTOR_FRAMES = [
    "Quiz night trivia card: {words}.",
    "The onboarding slides show {words} as an example sentence, without any real details.",
    "Someone wrote '{words}' on the whiteboard during the {day} retro as a joke.",
    "The old FAQ draft listed {words} as an open question that was never answered.",
]


def _slug(phrase: str) -> str:
    return phrase.removeprefix("the ").lower().replace(" ", "-")


def _fill(template: str, subject: tuple[str, str], values: dict[str, Any]) -> str:
    s, q = subject
    out = template.format(S=s, Q=q, s=s.removeprefix("the "), s_slug=_slug(s), **values)
    return out[0].upper() + out[1:]


class _Matcher:
    """Whether a query's MATCH expression matches a text, by FTS5 with the hub's tokenizer."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(text, tokenize='{_TOKENIZE}')")

    def shares(self, query: str, texts: list[str]) -> bool:
        expression = match_expression(query)
        if expression is None:
            return False
        self.conn.execute("DELETE FROM t")
        self.conn.executemany("INSERT INTO t (text) VALUES (?)", [(t,) for t in texts])
        return self.conn.execute("SELECT count(*) FROM t WHERE t MATCH ?", (expression,)).fetchone()[0] > 0

    def overlap(self, query: str, text: str) -> int:
        """How many of the query's terms match ``text``."""
        expression = match_expression(query)
        if expression is None:
            return 0
        self.conn.execute("DELETE FROM t")
        self.conn.execute("INSERT INTO t (text) VALUES (?)", (text,))
        return sum(
            self.conn.execute("SELECT count(*) FROM t WHERE t MATCH ?", (term,)).fetchone()[0]
            for term in expression.split(" OR ")
        )


def build(seed: int = SEED) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The corpus items and the queries."""
    rng = random.Random(seed)
    matcher = _Matcher()
    items: list[dict[str, Any]] = []
    facts: dict[str, dict[str, Any]] = {}  # fact id -> {texts, instances, subject, kind}

    def add(fact: str, kind: str, text: str, instance: str, data: dict[str, Any]) -> None:
        item_id = f"{fact}#{sum(1 for i in items if i['fact'] == fact)}" if fact else f"bg-{len(items)}"
        items.append({"item_id": item_id, "fact": fact, "kind": kind, "instance": instance,
                      "text": text, "data": data})
        if fact:
            entry = facts.setdefault(fact, {"texts": [], "instances": []})
            entry["texts"].append(text)
            entry["instances"].append(instance)

    for si, subject in enumerate(SUBJECTS):
        for name, (kind, answers, _, _) in PREDICATES.items():
            fact = f"{name}:{si}"
            other = SUBJECTS[(si + 7) % len(SUBJECTS)][0]
            lang, build_tool = rng.choice(LANGS)
            values = {
                "day": rng.choice(DAYS), "team": rng.choice(TEAMS), "person": rng.choice(PEOPLE),
                "n": rng.choice([3, 5, 8, 12, 20, 30, 45, 60, 90, 120, 250, 400, 1000, 5000]),
                "k": rng.choice([3, 4, 5, 6]), "vault": rng.choice(VAULTS), "tool": rng.choice(TOOLS),
                "hour": rng.choice(["noon", "2 pm", "3 pm", "4 pm"]), "lang": lang, "build": build_tool,
                "region": rng.choice(REGIONS), "v": f"{rng.randint(1, 9)}.{rng.randint(0, 20)}",
                "S2": other,
            }
            # One instance learns it; one fact in five is also learned by a
            # second instance, in the other wording.
            first = rng.choice(INSTANCES)
            order = [0, 1] if rng.random() < 0.5 else [1, 0]
            learners = [first]
            if rng.random() < 0.2:
                learners.append(rng.choice([i for i in INSTANCES if i != first]))
            for variant, instance in zip(order, learners, strict=False):
                text = _fill(answers[variant], subject, values)
                if kind == "knowledge":
                    data = {"content": text, "knowledge_id": f"k-{fact}-{instance}", "confidence": 0.8}
                else:
                    data = {"content": text, "tags": [name], "importance": 0.6}
                add(fact, kind, text, instance, data)
    skill_subjects = list(range(len(SUBJECTS)))
    for stem, category, contexts, _ in SKILLS:
        for si in skill_subjects:
            subject = SUBJECTS[si]
            fact = f"skill-{stem}:{si}"
            name = f"{stem}_{_slug(subject[0]).replace('-', '_')}"
            ctx = [_fill(c, subject, {}) for c in contexts]
            invocations = rng.randint(4, 40)
            data = {"name": name, "skill_id": name, "category": category, "usage": {
                "invocations": invocations, "successes": rng.randint(0, invocations), "contexts": ctx}}
            text = f"{name} ({category}). used for: " + "; ".join(ctx)
            add(fact, "skill", text, rng.choice(INSTANCES), data)
    for _ in range(4200):
        text = (f"{rng.choice(_BG_WHO)} {rng.choice(_BG_VERB)} {rng.choice(_BG_THING)} "
                + rng.choice(_BG_TAIL).format(day=rng.choice(DAYS), city=rng.choice(_CITIES)))
        text = text[0].upper() + text[1:]
        if any(i["text"] == text for i in items[-400:]):
            continue
        add("", "memory", text, rng.choice(INSTANCES), {"content": text, "tags": ["chatter"],
                                                        "importance": 0.3})

    queries: list[dict[str, Any]] = []
    problems: list[str] = []

    def ask(q: str, category: str, relevant: list[str]) -> None:
        answer_instances = sorted({i for f in relevant for i in facts[f]["instances"]})
        # Seven queries in ten come from an instance that never learned the answer.
        others = [i for i in INSTANCES if i not in answer_instances]
        asked_by = rng.choice(others) if others and rng.random() < 0.7 else rng.choice(INSTANCES)
        texts = [t for f in relevant for t in facts[f]["texts"]]
        if category != "lexical" and matcher.shares(q, texts):
            problems.append(f"paraphrase query shares a word with its answer: {q!r} / {texts}")
        if category == "lexical" and not matcher.shares(q, texts):
            problems.append(f"lexical query shares no word with its answer: {q!r}")
        queries.append({
            "qid": f"q{len(queries):03d}", "q": q, "category": category, "relevant": relevant,
            "asked_by": asked_by, "answer_instances": answer_instances,
            "cross_instance": asked_by not in answer_instances,
        })

    pairs = [(si, name) for si in range(len(SUBJECTS)) for name in PREDICATES]
    rng.shuffle(pairs)
    picks = iter(pairs)
    for _ in range(80):
        si, name = next(picks)
        ask(_fill(rng.choice(PREDICATES[name][3]), SUBJECTS[si], {}), "lexical", [f"{name}:{si}"])
    for _ in range(100):
        si, name = next(picks)
        ask(_fill(rng.choice(PREDICATES[name][2]), SUBJECTS[si], {}), "paraphrase", [f"{name}:{si}"])
    distractors: list[dict[str, Any]] = []
    for _ in range(60):
        si, name = next(picks)
        q = _fill(rng.choice(PREDICATES[name][2]), SUBJECTS[si], {})
        words = q.rstrip("?").split(" ", 1)[1].lower()  # the query without its first word
        text = rng.choice(_DISTRACTOR_FRAMES).format(words=words, day=rng.choice(DAYS))
        fact = f"{name}:{si}"
        if matcher.overlap(q, text) <= max(matcher.overlap(q, t) for t in facts[fact]["texts"]):
            problems.append(f"distractor shares no more words than the answer: {text!r}")
        distractors.append({"item_id": f"distractor-{len(distractors)}", "fact": "", "kind": "memory",
                            "instance": rng.choice(INSTANCES), "text": text,
                            "data": {"content": text, "tags": ["chatter"], "importance": 0.3}})
        ask(q, "distractor", [fact])
    multi = [(si, m) for si in range(len(SUBJECTS)) for m in range(len(MULTI))]
    rng.shuffle(multi)
    for si, m in multi[:50]:
        preds, templates = MULTI[m]
        ask(_fill(rng.choice(templates), SUBJECTS[si], {}), "multi", [f"{p}:{si}" for p in preds])
    skill_qs = [(si, k) for si in skill_subjects for k in range(len(SKILLS))]
    rng.shuffle(skill_qs)
    for si, k in skill_qs[:40]:
        stem, _, _, templates = SKILLS[k]
        ask(_fill(rng.choice(templates), SUBJECTS[si], {}), "skill", [f"skill-{stem}:{si}"])
    if problems:
        raise AssertionError("the set breaks its own rules:\n" + "\n".join(problems))
    # Distractors go in among the background, not at the end.
    for d in distractors:
        items.insert(rng.randrange(len(items) + 1), d)
    return items, queries


def _dump(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed files differ")
    args = parser.parse_args(argv)
    items, queries = build()
    outputs = {HERE / "corpus.jsonl": _dump(items), HERE / "queries.jsonl": _dump(queries)}
    if args.check:
        stale = [p.name for p, text in outputs.items() if not p.exists() or p.read_text() != text]
        if stale:
            print("stale: " + ", ".join(stale) + " (run make_set.py)")
            return 1
        print("up to date")
        return 0
    for path, text in outputs.items():
        path.write_text(text)
    kinds: dict[str, int] = {}
    for item in items:
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    cats: dict[str, int] = {}
    for query in queries:
        cats[query["category"]] = cats.get(query["category"], 0) + 1
    cross = sum(q["cross_instance"] for q in queries)
    print(f"{len(items)} items {kinds}; {len(queries)} queries {cats}, {cross} cross-instance")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
