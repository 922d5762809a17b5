#!/usr/bin/env python3
"""Starling's own mutation families for the shared evaluation harness (issue 15).

The shared harness (``$STARLING_SHARED/eval``) measures recall on variants
made by its own mutation families.  The fingerprint engine was tuned while
looking at exactly those, so its numbers on them are optimistic.  The
families here are text rewrites the engine was *not* tuned on: held-out
robustness, so that no single generator's quirks decide what "robust" means.

Each family has the shared contract (see ``mutate.py``): it takes
(msg, rng), msg an ``email.message.Message`` parsed by
``mailtext.parse_bytes`` (compat32), edits it in place and returns a short
note, or None when it changed nothing.  Text and HTML parts are decoded,
edited and re-encoded with the shared helpers (``mutate.get_text`` /
``mutate.set_text`` / ``mutate.map_html_text``), so variants stay valid MIME;
URLs, e-mail addresses, domain names and HTML character references are never
edited.  Each family draws its intensity per variant from rng.

    synonyms     common marketing words replaced by synonyms (10-35 %)
    misspell     typos in words of >= 4 letters: swapped, dropped or doubled
                 letter, replaced vowel (5-20 %)
    sentences    1-4 plausible filler sentences inserted at sentence
                 boundaries; 0-2 sentences deleted when there are >= 6
    reorder      paragraphs shuffled (text/plain: blank-line separated; HTML:
                 runs of >= 3 sibling <p>/<div>/<li>/<tr> blocks, else
                 <p>- or <br><br>-separated paragraphs with balanced tags)
    confusables  letters replaced by fullwidth forms, mathematical
                 alphanumerics, Armenian/Cherokee look-alikes, or followed by
                 a combining mark (5-25 % of letters)
    split_words  words split by a space, hyphen, dot, soft hyphen or
                 zero-width joiner (5-15 %)

``install()`` registers them into ``mutate.FAMILIES`` so that the shared
``replay.py`` and ``mutate.generate`` use them (``eval/replay.py`` does that).

Standalone use (variants checked, a per-family table printed, optionally
written out for inspection):
    families.py [--corpus DIR] [--n 5] [--k 2] [--seed 1] [--only FAM,...] [--dump DIR]
"""

import argparse
import importlib.util
import itertools
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_EVAL = os.path.abspath(os.path.join(
    os.environ.get("STARLING_SHARED") or os.path.join(HERE, "..", "..", "shared"), "eval"))
sys.path.insert(0, SHARED_EVAL)
import mailtext  # noqa: E402
import mutate  # noqa: E402

# --------------------------------------------------------------------------
# shared plumbing

# Never edited: URLs, e-mail addresses, bare domain names, HTML character
# references.  One capturing group, so re.split keeps them at odd indices.
_PROTECT_RE = re.compile(
    r"((?:https?://|ftp://|mailto:|www\.)[^\s<>\"']+"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|\b(?:[\w-]+\.)+[a-z]{2,6}\b"
    r"|&(?:#\d+|#x[0-9a-f]+|[a-z][a-z0-9]*);)", re.I)


def edit_text_parts(msg, fn):
    """Run fn(text, is_html) -> new text over every text part and store the
    result where it changed.  A part whose edit fails is left as it was, so a
    family never raises on odd input.  Returns the number of parts changed."""
    changed = 0
    for part, sub in mutate.text_parts(msg):
        try:
            old = mutate.get_text(part)
            new = fn(old, sub == "html")
            if new != old:
                mutate.set_text(part, new)
                changed += 1
        except Exception:  # noqa: BLE001 - odd charsets, broken payloads
            continue
    return changed


def each_piece(text, is_html, fn):
    """Apply fn to every editable piece of a part: the visible text segments
    of HTML (not tags, comments, script/style), minus protected tokens."""
    def outside(seg):
        pieces = _PROTECT_RE.split(seg)
        pieces[::2] = [fn(p) for p in pieces[::2]]
        return "".join(pieces)
    return mutate.map_html_text(text, outside) if is_html else outside(text)


def rewrite(text, is_html, pattern, choose, edit, eligible=None):
    """Replace chosen matches of pattern in the editable pieces of one part.

    Matches (those passing ``eligible(match)``) are numbered across the whole
    part; ``choose(n)`` returns the set of indices to edit and
    ``edit(match)`` the replacement of each."""
    ok = eligible or (lambda m: True)
    count = 0

    def counter(piece):
        nonlocal count
        count += sum(1 for m in pattern.finditer(piece) if ok(m))
        return piece

    each_piece(text, is_html, counter)
    chosen = choose(count)
    if not chosen:
        return text
    index = itertools.count()

    def sub(m):
        return edit(m) if ok(m) and next(index) in chosen else m.group(0)

    return each_piece(text, is_html, lambda p: pattern.sub(sub, p))


def pick_rate(rng, rate):
    """A choose() for rewrite(): each item with probability rate, and at
    least one when there is any."""
    def choose(n):
        chosen = {i for i in range(n) if rng.random() < rate}
        if n and not chosen:
            chosen.add(rng.randrange(n))
        return chosen
    return choose


def char_ref(s):
    """Non-ASCII characters of s as HTML numeric character references."""
    return "".join(c if ord(c) < 128 else f"&#x{ord(c):X};" for c in s)


def match_case(model, word):
    """word with the capitalisation of model (ALL CAPS, Capitalised, lower)."""
    if len(model) > 1 and model.isupper():
        return word.upper()
    if model[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


_WORD4_RE = re.compile(r"\b[A-Za-z]{4,}\b")

# --------------------------------------------------------------------------
# synonyms

_SYNONYM_TABLE = """
free: complimentary, no-cost, gratis, zero-cost
money: cash, funds, dollars, income
cash: money, funds, dollars
income: earnings, revenue, profits, money
earn: make, generate, pull in, bring in
make: earn, create, build, generate
save: keep, conserve, preserve
savings: discounts, reductions, deals
offer: deal, proposal, promotion, bargain
deal: offer, bargain, opportunity
special: exclusive, unique, limited, exceptional
exclusive: special, private, select
limited: restricted, short, brief
time: period, moment, occasion
now: today, immediately, right away, at once
today: now, right away, this very day
immediately: instantly, right away, at once, now
instantly: immediately, at once, in seconds, right away
fast: quick, rapid, speedy, swift
quick: fast, rapid, speedy, swift
quickly: fast, rapidly, swiftly, speedily
easy: simple, effortless, painless
easily: effortlessly, simply, readily, without effort
simple: easy, basic, straightforward, uncomplicated
guaranteed: assured, certain, promised, ensured
guarantee: promise, assurance, warranty, pledge
order: purchase, buy, request, get
buy: purchase, order, get, acquire
get: receive, obtain, grab, gain
receive: get, obtain, collect, gain
send: mail, forward, deliver, ship
click: tap, press, select
call: phone, ring, contact, dial
contact: reach, call, email, write to
information: info, details, facts, particulars
info: information, details, facts
details: information, particulars, specifics, facts
business: company, firm, enterprise, venture
company: business, firm, corporation, enterprise
opportunity: chance, opening, possibility, prospect
chance: opportunity, shot, possibility
home: house, residence, household
work: labor, job, effort, toil
job: work, position, career, occupation
people: folks, individuals, persons, customers
customer: client, buyer, consumer, shopper
customers: clients, buyers, consumers, shoppers
product: item, merchandise, goods
products: items, merchandise, goods, wares
service: support, assistance, help
price: cost, rate, charge, fee
cost: price, charge, expense, fee
low: cheap, reduced, small, minimal
lowest: cheapest, best, smallest, most affordable
cheap: inexpensive, affordable, low-cost, budget
best: finest, top, greatest, leading
great: excellent, fantastic, wonderful, terrific
amazing: incredible, astonishing, stunning, remarkable
incredible: amazing, unbelievable, astonishing, extraordinary
new: fresh, latest, brand-new, novel
latest: newest, most recent, current
big: large, huge, massive, substantial
huge: enormous, massive, big, giant
large: big, huge, sizable, substantial
small: little, tiny, modest, minor
help: assist, aid, support, serve
need: require, want, must have
want: wish, desire, need, would like
love: adore, enjoy, like
find: discover, locate, uncover, see
learn: discover, find out, see, understand
see: view, look at, check out, discover
look: see, view, check, glance
start: begin, launch, commence, kick off
begin: start, commence, launch
stop: end, quit, cease, halt
end: finish, stop, close, conclude
remove: delete, unsubscribe, take off, drop
list: mailing list, database, roster, directory
email: e-mail, message, mail, note
message: email, letter, note, notice
mail: email, post, letters
address: email address, location, contact
reply: respond, answer, write back, return
please: kindly, do, be sure to
thanks: thank you, many thanks, cheers
important: crucial, vital, essential, significant
urgent: pressing, critical, immediate, important
confidential: private, secret, discreet
private: confidential, personal, discreet
privacy: confidentiality, discretion, secrecy
secure: safe, protected, guarded
safe: secure, protected, harmless, risk-free
risk: danger, hazard, gamble
financial: monetary, fiscal, economic
credit: loan, financing, borrowing
debt: bills, obligations, liabilities
loan: mortgage, credit, advance
rate: price, percentage, level
rates: prices, percentages, levels
mortgage: home loan, loan, refinance
insurance: coverage, protection, policy
health: wellness, wellbeing, fitness
weight: pounds, body weight, mass
lose: shed, drop, burn off
body: physique, figure, frame
results: outcomes, effects, returns
result: outcome, effect, return
success: achievement, prosperity, triumph
successful: prosperous, thriving, profitable
profit: gain, return, earnings
profits: gains, returns, earnings
rich: wealthy, affluent, prosperous
wealth: fortune, riches, prosperity
dollars: bucks, USD, cash
week: seven days, 7 days
month: 30 days, four weeks
year: twelve months, 12 months
minutes: mins, moments
visit: go to, check out, stop by, see
website: web site, site, homepage, web page
site: website, web site, page, homepage
online: on the web, on the internet, on-line
internet: net, web, online world
computer: PC, machine, system
software: program, application, tool
program: plan, system, scheme, course
system: method, program, formula, process
plan: program, scheme, strategy, blueprint
method: technique, system, approach, process
secret: hidden, little-known, insider, confidential
proven: tested, established, verified, demonstrated
real: genuine, actual, true, authentic
true: real, genuine, accurate, correct
legal: lawful, legitimate, legit, above-board
legitimate: legal, lawful, genuine, real
honest: sincere, truthful, straightforward, genuine
unique: one-of-a-kind, distinctive, special, rare
powerful: strong, potent, effective, mighty
effective: efficient, powerful, successful, potent
natural: organic, herbal, pure
completely: totally, fully, entirely, absolutely
absolutely: completely, totally, positively, certainly
totally: completely, fully, entirely, utterly
really: truly, very, genuinely, actually
very: extremely, truly, really, highly
simply: just, merely, only
just: only, simply, merely
only: just, merely, solely, simply
also: too, as well, additionally, plus
more: extra, additional, further
many: numerous, countless, lots of, plenty of
every: each, each and every
anyone: anybody, everyone, any person
everyone: everybody, all, each person
someone: somebody, a person
friend: buddy, pal, colleague, associate
friends: buddies, pals, colleagues, associates
family: household, relatives, loved ones, kin
member: subscriber, participant, user
members: subscribers, participants, users
subscribe: sign up, join, register, enroll
unsubscribe: opt out, remove yourself, be removed, sign off
join: sign up, enroll, register, become a member of
account: profile, membership, record
bonus: reward, extra, gift, incentive
gift: present, bonus, reward, freebie
prize: award, reward, jackpot
win: earn, receive, score, collect
winner: champion, victor, recipient
selected: chosen, picked, qualified
chosen: selected, picked
qualify: be eligible, be approved, be accepted
approved: accepted, qualified, okayed, authorized
available: obtainable, offered, accessible, on offer
discount: reduction, markdown, rebate, saving
sale: clearance, promotion, discount event
increase: boost, raise, grow, expand
reduce: lower, cut, decrease, shrink
improve: enhance, boost, upgrade, better
grow: expand, increase, build, develop
build: create, develop, construct, grow
create: make, build, develop, produce
provide: offer, supply, give, deliver
give: provide, offer, hand, grant
show: demonstrate, reveal, display, present
tell: inform, show, explain to
explain: describe, clarify, detail, outline
understand: grasp, know, realize, see
know: realize, understand, recognize, be aware
believe: think, trust, feel, accept
think: believe, feel, suppose, reckon
feel: sense, believe, experience
try: test, sample, attempt
test: try, check, trial, evaluate
trial: test, sample, tryout, demo
sample: example, specimen, trial, taste
spend: invest, pay, put in
pay: spend, cover, invest, settle
paid: compensated, rewarded, remunerated
invest: put money into, spend, commit
investment: stake, venture, commitment
market: industry, marketplace, trade, sector
marketing: advertising, promotion, sales
advertising: marketing, promotion, publicity
sell: market, offer, promote, trade
selling: marketing, offering, promoting
sales: revenue, orders, business
growth: expansion, increase, rise, development
future: tomorrow, days ahead, years ahead
life: lifestyle, existence, living
world: globe, planet, earth
country: nation, land, state
thousands: many thousands, tons, lots
hundreds: scores, many, dozens
dozens: many, scores, lots
problem: issue, trouble, difficulty, challenge
problems: issues, troubles, difficulties, challenges
question: query, inquiry, concern
questions: queries, inquiries, concerns
answer: reply, response, solution
solution: answer, remedy, fix, cure
support: help, assistance, backing, service
quality: standard, grade, caliber, excellence
high: top, premium, superior, elevated
top: best, leading, premier, first-rate
leading: top, foremost, premier, major
expert: specialist, professional, authority, pro
experts: specialists, professionals, authorities, pros
professional: expert, qualified, skilled, trained
doctor: physician, medic, MD
report: study, review, analysis, paper
research: study, investigation, analysis
access: entry, admission, use
download: get, grab, obtain
user: member, customer, subscriber
users: members, customers, subscribers
protect: guard, shield, safeguard, defend
protection: security, defense, safeguard, shelter
fee: charge, cost, payment, price
fees: charges, costs, payments
charge: fee, cost, price
obligation: commitment, requirement, strings attached
cancel: stop, end, terminate, drop
request: ask for, order, apply for
apply: sign up, register, submit
form: questionnaire, application, sheet
complete: fill out, finish, full, total
enter: type, submit, input, key in
phone: telephone, call, ring
area: region, zone, place
local: nearby, regional, neighbourhood
wonderful: great, marvelous, lovely, delightful
fantastic: great, fabulous, terrific, superb
excellent: outstanding, superb, great, first-class
perfect: ideal, flawless, excellent, just right
happy: glad, pleased, delighted, thrilled
excited: thrilled, eager, delighted
ready: prepared, set, willing, all set
sure: certain, confident, positive
certain: sure, definite, guaranteed
possible: feasible, doable, achievable
able: capable, in a position, equipped
hard: difficult, tough, challenging
difficult: hard, tough, challenging
soon: shortly, quickly, before long, in no time
ever: at any time, in history, yet
never: not ever, at no time
again: once more, another time, anew
first: initial, very first, opening
last: final, closing, ultimate
next: following, coming, upcoming
current: present, existing, ongoing
previous: earlier, prior, former
already: by now, previously, before
still: yet, even now, nonetheless
because: since, as, given that
however: but, yet, still, nonetheless
without: with no, minus, free of
including: plus, such as, along with
extra: additional, bonus, more, added
additional: extra, more, further, added
entire: whole, complete, full, total
whole: entire, complete, full
needed: required, necessary, essential
necessary: needed, required, essential
required: needed, necessary, mandatory
"""

SYNONYMS = {
    key.strip(): [alt.strip() for alt in alts.split(",")]
    for key, alts in (line.split(":", 1) for line in _SYNONYM_TABLE.strip().splitlines())
}
_SYNONYM_RE = re.compile(r"\b(?:%s)\b" % "|".join(sorted(SYNONYMS, key=len, reverse=True)), re.I)


def synonyms(msg, rng):
    """Common marketing words replaced by synonyms (10-35 % of the words in
    the built-in table), keeping their capitalisation."""
    rate = rng.uniform(.10, .35)
    done = [0]

    def edit(m):
        done[0] += 1
        word = m.group(0)
        return match_case(word, rng.choice(SYNONYMS[word.lower()]))

    n = edit_text_parts(msg, lambda t, h: rewrite(t, h, _SYNONYM_RE, pick_rate(rng, rate), edit))
    return f"{done[0]} words at {rate:.0%}" if n else None


# --------------------------------------------------------------------------
# misspell

_VOWELS = "aeiou"


def _typo(word, rng):
    """One typo in word, never in its first letter: adjacent letters swapped,
    a letter dropped or doubled, or a vowel replaced by another vowel."""
    ops = ["swap", "drop", "double", "vowel"]
    rng.shuffle(ops)
    for op in ops:
        if op == "swap":
            spots = [i for i in range(1, len(word) - 1) if word[i].lower() != word[i + 1].lower()]
            if spots:
                i = rng.choice(spots)
                return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        elif op == "drop":
            i = rng.randrange(1, len(word))
            return word[:i] + word[i + 1:]
        elif op == "double":
            i = rng.randrange(1, len(word))
            return word[:i] + word[i] + word[i:]
        else:
            spots = [i for i in range(1, len(word)) if word[i].lower() in _VOWELS]
            if spots:
                i = rng.choice(spots)
                v = rng.choice([c for c in _VOWELS if c != word[i].lower()])
                return word[:i] + (v.upper() if word[i].isupper() else v) + word[i + 1:]
    return word


def misspell(msg, rng):
    """Character-level typos in 5-20 % of the words of >= 4 letters."""
    rate = rng.uniform(.05, .20)
    done = [0]

    def edit(m):
        done[0] += 1
        return _typo(m.group(0), rng)

    n = edit_text_parts(msg, lambda t, h: rewrite(t, h, _WORD4_RE, pick_rate(rng, rate), edit))
    return f"{done[0]} words at {rate:.0%}" if n else None


# --------------------------------------------------------------------------
# sentences

_FILLER_SUBJECTS = ["Our team", "Our staff", "This offer", "This program", "Every member", "Our company",
                    "Thousands of customers", "Each order", "Our service", "This opportunity"]
_FILLER_VERBS = ["has helped", "is designed for", "works for", "was created for", "is available to",
                 "has been trusted by", "is perfect for", "brings real results to"]
_FILLER_OBJECTS = ["people like you", "families across the country", "small business owners",
                   "busy professionals", "new customers", "our loyal readers", "home owners",
                   "everyone on our list"]
_FILLER_TAILS = ["", " every day", " since 1998", " without any hassle", " all year round",
                 " at no extra cost", " in just a few minutes", " around the world"]
_FILLER_STOCK = ["Please read this message carefully.", "We respect your privacy.",
                 "Act now while supplies last.", "This is not a chain letter.", "Thank you for your time.",
                 "Satisfaction is guaranteed.", "Do not miss this chance.", "Reply today to learn more.",
                 "Your information is kept strictly confidential.", "We look forward to hearing from you.",
                 "There is nothing else like it on the market.", "You have nothing to lose."]

# A sentence: a capital after whitespace (or at the start), up to . ! or ?,
# possibly over single line breaks but not over a blank line.
_SENTENCE_RE = re.compile(r"(?<!\S)[A-Z][^.!?\n]*(?:\n(?![ \t]*\n)[^.!?\n]*)*[.!?]+(?=\s|$)[ \t]*")
# A boundary: after . ! or ? that ends a line or is followed by a new sentence.
_BOUNDARY_RE = re.compile(r"(?<=[.!?])(?=[ \t]*(?:\n|$)|[ \t]+[A-Z\"'(])")


def _filler(rng):
    """One plausible marketing sentence from the built-in vocabulary."""
    if rng.random() < .5:
        return rng.choice(_FILLER_STOCK)
    return (f"{rng.choice(_FILLER_SUBJECTS)} {rng.choice(_FILLER_VERBS)} "
            f"{rng.choice(_FILLER_OBJECTS)}{rng.choice(_FILLER_TAILS)}.")


def sentences(msg, rng):
    """1-4 filler sentences inserted at random sentence boundaries (appended
    as a paragraph where there is none), and 0-2 sentences deleted from
    parts with >= 6 sentences."""
    fillers = [_filler(rng) for _ in range(rng.randint(1, 4))]
    n_delete = rng.randint(0, 2)
    done = {"+": 0, "-": 0}

    def is_sentence(m):
        return len(m.group(0).split()) >= 4

    def choose_deleted(n):
        return set(rng.sample(range(n), n_delete)) if n >= 6 else set()

    def delete(m):
        done["-"] += 1
        return ""

    def part(text, is_html):
        text = rewrite(text, is_html, _SENTENCE_RE, choose_deleted, delete, is_sentence)
        queue = list(fillers)

        def choose_boundaries(n):
            return set(rng.sample(range(n), min(n, len(queue))))

        def insert(m):
            done["+"] += 1
            return " " + queue.pop()

        new = rewrite(text, is_html, _BOUNDARY_RE, choose_boundaries, insert)
        if queue:  # fewer boundaries than fillers: the rest as a closing paragraph
            done["+"] += len(queue)
            para = " ".join(queue)
            if is_html:
                new = mutate._insert_into_html(new, f"\n<p>{para}</p>\n", "end")
            else:
                new = new.rstrip("\n") + "\n\n" + para + "\n"
        return new

    n = edit_text_parts(msg, part)
    return f"+{done['+']} -{done['-']}" if n else None


# --------------------------------------------------------------------------
# reorder

_PARA_SEP_RE = re.compile(r"(\n[ \t]*\n\s*)")
# A sibling block that is safe to move: <p>, <div> or <li> with no nested
# block of its own kind and no table/list structure inside, or a <tr> with no
# nested table.  Unclosed blocks never match.
_HTML_BLOCK_RE = re.compile(
    r"<(p|div|li)\b[^>]*>"
    r"(?:(?!<(?:\1|table|tbody|thead|tr|td|th|ul|ol|body|html)\b"
    r"|</(?:table|tbody|thead|tr|td|th|ul|ol|body|html)\b).)*?"
    r"</\1\s*>"
    r"|<(tr)\b[^>]*>(?:(?!<(?:tr|table|body|html)\b|</(?:table|tbody|thead|body|html)\b).)*?</tr\s*>",
    re.I | re.S)
_HTML_GAP_RE = re.compile(r"\s*(?:<!--.*?-->\s*)*", re.S)


def _shuffled(blocks, rng, keep_first):
    """blocks in a new order (the first kept in place if keep_first); a
    rotation when the shuffle happens to give the same order back."""
    head = blocks[:1] if keep_first else []
    rest = blocks[len(head):]
    order = rest[:]
    rng.shuffle(order)
    if order == rest:
        order = rest[1:] + rest[:1]
    return head + order


def _reorder_plain(text, rng, keep_first):
    """Blank-line separated paragraphs shuffled, separators kept in place."""
    lead = text[:len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()):]
    core = text.strip()
    parts = _PARA_SEP_RE.split(core)
    paras = parts[::2]
    if len(paras) < 3:
        return text, 0
    parts[::2] = _shuffled(paras, rng, keep_first)
    return lead + "".join(parts) + trail, len(paras)


def _html_runs(html):
    """Runs of >= 3 movable sibling blocks of one tag separated only by
    whitespace or comments, with visible text in at least two of them."""
    runs, run = [], []
    for m in _HTML_BLOCK_RE.finditer(html):
        tag = (m.group(1) or m.group(2)).lower()
        if run and (tag != run[-1][0] or not _HTML_GAP_RE.fullmatch(html, run[-1][1].end(), m.start())):
            runs.append(run)
            run = []
        run.append((tag, m))
    runs.append(run)
    return [[m for _, m in r] for r in runs
            if len(r) >= 3 and sum(bool(mailtext.html_to_text(m.group(0)).strip()) for _, m in r) >= 2]


def _reorder_runs(html, rng, keep_first):
    """Each run of sibling blocks shuffled in place."""
    out, pos, moved = [], 0, 0
    for run in _html_runs(html):
        blocks = [m.group(0) for m in run]
        for m, block in zip(run, _shuffled(blocks, rng, keep_first)):
            out.append(html[pos:m.start()])
            out.append(block)
            pos = m.end()
        moved += len(blocks)
    out.append(html[pos:])
    return "".join(out), moved


# Flow paragraphs: stretches of HTML between structural tags, split at <p>
# tags (opening or closing, closed or not) or at two or more <br>.
_HTML_STRUCT_RE = re.compile(r"(</?(?:table|tbody|thead|tfoot|tr|td|th|ul|ol|li|div|body|html|head|center|"
                             r"blockquote|form|h[1-6]|pre|script|style|title)\b[^>]*>)", re.I)
_HTML_PARA_SEP_RE = re.compile(r"((?:\s*<br\b[^>]*>){2,}\s*|(?:\s*</?p\b[^>]*>)+\s*)", re.I)
_HTML_TAG_RE = re.compile(r"<(/?)([a-z][a-z0-9]*)\b[^>]*?(/?)>", re.I)
_HTML_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "spacer", "wbr"}


def _balanced(chunk):
    """Whether every non-void tag opened in chunk is closed in it, in order."""
    stack = []
    for m in _HTML_TAG_RE.finditer(chunk):
        name = m.group(2).lower()
        if name in _HTML_VOID or m.group(3):
            continue
        if not m.group(1):
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    return not stack


def _reorder_flow(html, rng, keep_first):
    """Flow paragraphs shuffled within their stretch, where there are >= 3,
    at least two with visible text, and each one has balanced tags (so a
    move cannot misnest anything)."""
    regions = _HTML_STRUCT_RE.split(html)
    moved = 0
    for r in range(0, len(regions), 2):
        parts = _HTML_PARA_SEP_RE.split(regions[r])
        slots = [i for i in range(0, len(parts), 2) if parts[i].strip()]
        paras = [parts[i] for i in slots]
        if (len(paras) >= 3 and all(_balanced(p) for p in paras)
                and sum(bool(mailtext.html_to_text(p).strip()) for p in paras) >= 2):
            for i, para in zip(slots, _shuffled(paras, rng, keep_first)):
                parts[i] = para
            regions[r] = "".join(parts)
            moved += len(paras)
    return "".join(regions), moved


def _reorder_html(html, rng, keep_first):
    """Runs of sibling blocks shuffled; where there are none, flow
    paragraphs."""
    new, moved = _reorder_runs(html, rng, keep_first)
    return (new, moved) if moved else _reorder_flow(html, rng, keep_first)


def reorder(msg, rng):
    """Paragraph order shuffled where a part has >= 3 paragraphs (text/plain:
    blank-line separated; HTML: runs of sibling <p>/<div>/<li>/<tr> blocks,
    else <p>- or <br><br>-separated paragraphs between structural tags);
    the first paragraph stays in place with probability 0.5."""
    keep_first = rng.random() < .5
    moved = [0]

    def part(text, is_html):
        new, n = (_reorder_html if is_html else _reorder_plain)(text, rng, keep_first)
        moved[0] += n
        return new

    n = edit_text_parts(msg, part)
    return f"{moved[0]} blocks{' first kept' if keep_first else ''}" if n else None


# --------------------------------------------------------------------------
# confusables

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = _UPPER.lower()


def _alphabet(upper_start, lower_start):
    return {c: chr(upper_start + i) for i, c in enumerate(_UPPER)} | \
           {c: chr(lower_start + i) for i, c in enumerate(_LOWER)}


FULLWIDTH = _alphabet(0xFF21, 0xFF41)
# Mathematical alphanumeric styles without reserved holes (U+1D400 ...).
MATH_STYLES = {
    "bold": _alphabet(0x1D400, 0x1D41A),
    "sans": _alphabet(0x1D5A0, 0x1D5BA),
    "sans-bold": _alphabet(0x1D5D4, 0x1D5EE),
    "mono": _alphabet(0x1D670, 0x1D68A),
}
# Armenian and Cherokee letters that Unicode's confusables.txt maps to Latin.
LOOKALIKES = {
    "A": "\u13AA", "B": "\u13F4", "C": "\u13DF", "D": "\u13A0", "E": "\u13AC", "G": "\u13C0\u13F3",
    "H": "\u13BB", "J": "\u13AB", "K": "\u13E6", "L": "\u13DE", "M": "\u13B7", "O": "\u0555",
    "P": "\u13E2", "R": "\u13A1\u13D2", "S": "\u054F\u13D5\u13DA", "T": "\u13A2", "U": "\u054D",
    "V": "\u13D9", "W": "\u13B3\u13D4", "Y": "\u13A9", "Z": "\u13C3",
    "b": "\u13CF", "d": "\u13E7", "f": "\u0584", "g": "\u0581", "h": "\u0570\u13C2", "i": "\u13A5",
    "n": "\u0578\u057C", "o": "\u0585", "q": "\u0563\u0566", "u": "\u057D", "w": "\u0561",
}
COMBINING = ["\u0301", "\u0300", "\u0302", "\u0308", "\u0307", "\u0323"]
_LETTER_RE = re.compile(r"[A-Za-z]")


def confusables(msg, rng):
    """5-25 % of the letters replaced by look-alikes from 1-3 styles chosen
    per variant: fullwidth forms, one mathematical alphanumeric style,
    Armenian/Cherokee look-alikes, or the letter followed by a combining
    mark.  In HTML, as numeric character references half of the time."""
    styles = rng.sample(["fullwidth", "math", "lookalike", "combining"], rng.randint(1, 3))
    math = MATH_STYLES[rng.choice(sorted(MATH_STYLES))]
    rate = rng.uniform(.05, .25)
    refs = rng.random() < .5
    done = [0]

    def eligible(m):
        return styles != ["lookalike"] or m.group(0) in LOOKALIKES

    def look_alike(c):
        style = rng.choice([s for s in styles if s != "lookalike" or c in LOOKALIKES])
        if style == "fullwidth":
            return FULLWIDTH[c]
        if style == "math":
            return math[c]
        if style == "lookalike":
            return rng.choice(LOOKALIKES[c])
        return c + rng.choice(COMBINING)

    def part(text, is_html):
        def edit(m):
            done[0] += 1
            new = look_alike(m.group(0))
            return char_ref(new) if is_html and refs else new
        return rewrite(text, is_html, _LETTER_RE, pick_rate(rng, rate), edit, eligible)

    n = edit_text_parts(msg, part)
    return f"{done[0]} letters at {rate:.0%} {'+'.join(styles)}" if n else None


# --------------------------------------------------------------------------
# split_words

SEPARATORS = {"space": " ", "hyphen": "-", "dot": ".", "soft-hyphen": "\u00ad", "zwj": "\u200d"}


def split_words(msg, rng):
    """5-15 % of the words of >= 4 letters split in two by 1-3 separator
    kinds chosen per variant: space, hyphen, dot, soft hyphen, zero-width
    joiner ("vi agra", "fr-ee", "m.oney").  In HTML, the invisible ones as
    character references half of the time."""
    kinds = rng.sample(sorted(SEPARATORS), rng.randint(1, 3))
    rate = rng.uniform(.05, .15)
    refs = rng.random() < .5
    done = [0]

    def part(text, is_html):
        def edit(m):
            done[0] += 1
            w = m.group(0)
            i = rng.randint(1, len(w) - 1)
            sep = SEPARATORS[rng.choice(kinds)]
            return w[:i] + (char_ref(sep) if is_html and refs else sep) + w[i:]
        return rewrite(text, is_html, _WORD4_RE, pick_rate(rng, rate), edit)

    n = edit_text_parts(msg, part)
    return f"{done[0]} words at {rate:.0%} {'+'.join(kinds)}" if n else None


# --------------------------------------------------------------------------
# registration

OWN_FAMILIES = {
    "synonyms": synonyms,
    "misspell": misspell,
    "sentences": sentences,
    "reorder": reorder,
    "split_words": split_words,
    "confusables": confusables,
}

# Combined variants apply families in mutate.FAMILIES order (make_variant
# iterates the dict): the text rewrites come before the shared obfuscation,
# whitespace/case and transfer-encoding families.
ORDER = ("headers", "personalise", "numbers", "urls", "synonyms", "misspell", "sentences", "reorder",
         "split_words", "confusables", "hashbuster", "html_obfuscation", "whitespace_case", "cte")


def install(order=ORDER):
    """Register OWN_FAMILIES into mutate.FAMILIES, rebuilding the dict in
    place in ``order``.  Families the shared module has that ``order`` does
    not name (added there later) keep their relative order at the end.
    Idempotent; raises ValueError for a name that is no family."""
    merged = dict(mutate.FAMILIES) | OWN_FAMILIES
    unknown = [name for name in order if name not in merged]
    if unknown:
        raise ValueError(f"unknown mutation family {','.join(unknown)}")
    rebuilt = {name: merged[name] for name in order}
    rebuilt |= {name: fn for name, fn in merged.items() if name not in rebuilt}
    mutate.FAMILIES.clear()
    mutate.FAMILIES.update(rebuilt)
    return list(mutate.FAMILIES)


def load_shared_replay():
    """The shared harness's replay module, imported from SHARED_EVAL by path
    (eval/replay.py here has the same name) and registered as ``replay`` so
    the shared modules' own ``import replay`` finds it."""
    if "replay" in sys.modules and os.path.dirname(os.path.abspath(sys.modules["replay"].__file__)) == SHARED_EVAL:
        return sys.modules["replay"]
    spec = importlib.util.spec_from_file_location("replay", os.path.join(SHARED_EVAL, "replay.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["replay"] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------
# standalone: make variants, check them, print a per-family table

def main(argv=None):
    install()
    replay = load_shared_replay()
    ap = argparse.ArgumentParser(description="Make mutated spam variants with the shared and Starling's own "
                                             "families, check that they parse, and print per family how often "
                                             "the text body changed.")
    ap.add_argument("--corpus", default=os.environ.get("EVAL_CORPUS", os.path.join("target", "corpus")))
    ap.add_argument("--split", default="dev", choices=sorted(replay.SPLITS))
    ap.add_argument("--n", type=int, default=5, help="spam to sample (5)")
    ap.add_argument("--k", type=int, default=2, help="combined variants per spam (2)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", help="comma-separated subset of: " + ",".join(mutate.FAMILIES))
    ap.add_argument("--dump", help="write the variants and variants.json to this directory")
    a = ap.parse_args(argv)
    try:
        pool = mutate.family_pool(a.only)
    except ValueError as e:
        raise SystemExit(str(e))
    spam = replay.sample_spam(replay.load_split(a.corpus, a.split), a.n, a.seed)
    raw = {}
    for m in spam:
        with open(m.path, "rb") as f:
            raw[m.key] = f.read()
    body = {key: mailtext.text_body(mailtext.parse_bytes(data)) for key, data in raw.items()}
    if a.dump:
        os.makedirs(a.dump, exist_ok=True)
    meta, bad = [], 0
    stats = {f: {"variants": 0, "noted": 0, "changed": 0} for f in pool}
    for v in mutate.generate([(m.key, m.path) for m in spam], a.seed, a.k, True, pool):
        defects = mutate.validate(v["data"], raw[v["key"]])
        changed = mailtext.text_body(mailtext.parse_bytes(v["data"])) != body[v["key"]]
        if defects:
            bad += 1
            print(f"{v['key']} {v['variant']}: new defects {defects}", file=sys.stderr)
        if v["variant"].startswith("iso-"):
            s = stats[v["families"][0]]
            s["variants"] += 1
            s["noted"] += bool(v["applied"][v["families"][0]])
            s["changed"] += changed
        item = {k: v[k] for k in ("key", "variant", "families", "applied")}
        if a.dump:
            item["file"] = f"{v['key'].replace('/', '_')}.{v['variant']}.eml"
            with open(os.path.join(a.dump, item["file"]), "wb") as f:
                f.write(v["data"])
        meta.append(item)
    if a.dump:
        with open(os.path.join(a.dump, "variants.json"), "w") as f:
            json.dump(meta, f, indent=1)
    print(f"{len(meta)} variants of {len(spam)} spam ({a.k} combined + 1 per family each); "
          f"{bad} with new defects under the strict parser" + (f"; written to {a.dump}" if a.dump else ""))
    print("\nisolated variants, per family:\n")
    print("| family | variants | family noted a change | text body changed |")
    print("|---|---|---|---|")
    for fam, s in stats.items():
        own = " (own)" if fam in OWN_FAMILIES else ""
        print(f"| {fam}{own} | {s['variants']} | {s['noted']}/{s['variants']} | {s['changed']}/{s['variants']} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
