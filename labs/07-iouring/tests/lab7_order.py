"""Lab 7's one check of source text: the memory order of the ring indices in uring_raw.c.

Why the source and not a run: on x86 every plain store is already a release and every
plain load an acquire at the CPU level, and the compiler happens not to move these
particular accesses, so a ring written with plain `*b->sq_tail = n` reads every byte,
under any load, on every machine the workshop runs on. On ARM or POWER the same code
lets the kernel see a new SQ tail before the SQE it covers, or lets us read a CQE before
the kernel finished writing it: a wrong byte once in a million requests. No test can
provoke that here, so this one reads the code, precisely: one rule per index access.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The calls that order an access, and the order each one implies when it names none.
ATOMIC_CALL = re.compile(r"\b(__atomic_(?:load|store)(?:_n)?|atomic_(?:load|store)(?:_explicit)?|"
                         r"(?:io_uring_)?smp_(?:load_acquire|store_release))\s*\(")
FENCE = re.compile(r"\b(?:__atomic_thread_fence\s*\(\s*__ATOMIC_SEQ_CST|atomic_thread_fence\s*\(\s*memory_order_seq_cst|"
                   r"__sync_synchronize\s*\(|io_uring_smp_mb\s*\()")


@dataclass(frozen=True)
class Rule:
    function: str      # where the access is: raw_prep, raw_submit, raw_reap
    field: str         # the index: sq_tail, cq_head, ...
    kind: str          # "store" or "load"
    why: str           # what goes wrong without it, for the message
    fix: str           # the line that does it right

    @property
    def orders(self) -> set[str]:
        """The memory orders that are enough (seq_cst is stronger than either)."""
        return {"release", "seq_cst"} if self.kind == "store" else {"acquire", "seq_cst"}

    @property
    def name(self) -> str:
        return {"sq_tail": "SQ tail", "sq_head": "SQ head", "cq_tail": "CQ tail", "cq_head": "CQ head"}[self.field]


RULES = [
    Rule("raw_submit", "sq_tail", "store",
         "the kernel may see the new tail before the SQE it covers, and run a half-written request",
         "__atomic_store_n(b->sq_tail, b->sq_pending, __ATOMIC_RELEASE)"),
    Rule("raw_reap", "cq_tail", "load",
         "the CQE's user_data and res may be read before the kernel's writes to them are visible",
         "__atomic_load_n(b->cq_tail, __ATOMIC_ACQUIRE)"),
    Rule("raw_reap", "cq_head", "store",
         "the kernel may see the slots given back before your copies of those CQEs are done, and overwrite them",
         "__atomic_store_n(b->cq_head, head, __ATOMIC_RELEASE) after the copies"),
    Rule("raw_prep", "sq_head", "load",
         "an SQE may be refilled before the kernel has finished reading it",
         "__atomic_load_n(b->sq_head, __ATOMIC_ACQUIRE)"),
]


def without_comments(source: str) -> str:
    """The C source with its comments blanked (the starter's TODO text names the very calls checked)."""
    source = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group()), source, flags=re.S)
    return re.sub(r"//[^\n]*", "", source)


def closing(text: str, start: int, opener: str, closer: str) -> int:
    """The index just past the `closer` that matches the `opener` just before text[start]."""
    depth, i = 1, start
    while depth and i < len(text):
        depth += {opener: 1, closer: -1}.get(text[i], 0)
        i += 1
    return i


def function_body(source: str, name: str) -> str:
    """The text between the braces of `name`'s definition; "" when there is none."""
    start = re.search(rf"\b{name}\s*\([^;{{)]*\)\s*\{{", source)
    if start is None:
        return ""
    return source[start.end():closing(source, start.end(), "{", "}") - 1]


def call_args(body: str, open_paren: int) -> str:
    """The argument text of the call whose '(' is at open_paren."""
    return body[open_paren + 1:closing(body, open_paren + 1, "(", ")") - 1]


@dataclass(frozen=True)
class Access:
    call: str          # the function or builtin
    kind: str          # "load" or "store"
    order: str         # relaxed, acquire, release, seq_cst, consume, acq_rel
    first_arg: str


def atomic_accesses(body: str) -> list[Access]:
    found = []
    for m in ATOMIC_CALL.finditer(body):
        call = m.group(1)
        args = call_args(body, m.end() - 1)
        kind = "load" if "load" in call else "store"
        named = re.findall(r"(?:__ATOMIC_|memory_order_)(\w+)", args)
        if named:
            order = named[-1].lower()
        elif "acquire" in call or "release" in call:
            order = "acquire" if kind == "load" else "release"
        else:
            order = "seq_cst" if call in ("atomic_load", "atomic_store") else "none"
        found.append(Access(call, kind, order, args.split(",")[0]))
    return found


def plain_stores(body: str, field: str) -> list[str]:
    """Assignments through the index pointer: `*b->sq_tail = n`, `*(b->cq_head) += n`."""
    return re.findall(rf"\*\s*\(?\s*[\w.]+\s*->\s*{field}\s*\)?\s*(?:[-+|]?=)(?!=)[^;]*", body)


def plain_loads(body: str, field: str) -> int:
    """Reads of *b->field outside any atomic call (a store through it is counted by plain_stores)."""
    derefs = len(re.findall(rf"\*\s*\(?\s*[\w.]+\s*->\s*{field}\b", body))
    return derefs - len(plain_stores(body, field))


def problems(path: Path) -> list[str]:
    """Each index access of uring_raw.c that lacks its memory order, as a sentence that names the fix."""
    source = without_comments(path.read_text())
    found = []
    for rule in RULES:
        body = function_body(source, rule.function)
        if not body:
            found.append(f"{path.name} has no function {rule.function}: keep the names of the reference")
            continue
        where = f"{path.name}, {rule.function}"
        ordered = [a for a in atomic_accesses(body) if re.search(rf"\b{rule.field}\b", a.first_arg)]
        right = [a for a in ordered if a.kind == rule.kind and a.order in rule.orders]
        wrong = [a for a in ordered if a.kind == rule.kind and a.order not in rule.orders]
        stores = plain_stores(body, rule.field)
        if rule.kind == "store" and stores:
            found.append(f"{where}: the {rule.name} is stored without ordering (`{stores[0].strip()}`): "
                         f"{rule.why}. Use {rule.fix}")
        elif rule.kind == "load" and plain_loads(body, rule.field):
            found.append(f"{where}: the {rule.name} is loaded without ordering (a plain *b->{rule.field}): "
                         f"{rule.why}. Use {rule.fix}")
        elif wrong:
            found.append(f"{where}: the {rule.name} is {rule.kind}d with {wrong[0].call}(..., {wrong[0].order}); a "
                         f"{rule.kind} of it must be {' or '.join(sorted(rule.orders))}: {rule.why}. Use {rule.fix}")
        elif not right:
            found.append(f"{where}: no {rule.kind} of the {rule.name} with {' or '.join(sorted(rule.orders))} "
                         f"order: {rule.why}. Use {rule.fix}")
    submit = function_body(source, "raw_submit")
    if submit and not FENCE.search(submit):
        found.append(f"{path.name}, raw_submit: no full fence between the SQ tail store and the read of the SQ flags "
                     "(SQPOLL): the CPU may read IORING_SQ_NEED_WAKEUP before the tail is visible while the poller "
                     "goes to sleep having read the old tail, and both wait for each other. Use "
                     "__atomic_thread_fence(__ATOMIC_SEQ_CST) after the tail store")
    return found
