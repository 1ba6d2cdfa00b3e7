"""The answer key in its two editions, and the normalisation both compare through.

* `quiz/key.toml`, the **instructor edition**: plain answers and a one-line explanation for the
  right answer and for every wrong option (and for known wrong short answers). The student
  release excludes it.
* `quiz/key.hashed.toml`, the **student edition**, generated from it by
  `python -m checker.quiz build-key`: per question a random salt and

  - choice questions: for every option, `sha256(salt|id|option:<letter>:<1 if correct else 0>)`.
    Correctness is hashed option by option, so a multiple-select answer earns partial credit
    without the key naming the correct set;
  - short answers: `sha256(salt|id|answer:<normalised answer>)` for each accepted form;
  - explanations, sealed (XOR with a SHA-256 keystream, base64) under the option letter or
    under the normalised answer itself, so a short answer's explanations open only for
    someone who typed that answer.

This keeps the key out of plain sight, not out of reach: everything a student's machine can
check offline, a determined student can brute-force (four letters are quickly tried). The
grade that counts is the instructor's, who holds the plain key. Grading always goes through
the hashed key, in both editions, so the student sees exactly what the instructor computes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from checker.quiz.bank import Bank, Question, QuizError
from checker.quiz.tomlw import dumps_key, header

SEP = "\x1f"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
SALT = re.compile(r"^[0-9a-f]{16}$")


# ---------------------------------------------------------------- normalisation

class InvalidAnswer(ValueError):
    """The text cannot be an answer of this type (e.g. a word where a number is expected)."""


_QUOTES = "\"'`“”‘’"


def normalise(value: object, answer_type: str) -> str:
    """Canonical form of a short answer, so `-32 001`, `−32001` and `"-32001"` compare equal.

    int: whitespace, `_` and thousands commas dropped, unicode minus accepted, an `HTTP ` prefix
    ignored. identifier: quotes, backticks, surrounding brackets and a trailing `()` dropped,
    case-folded. text: whitespace collapsed, case-folded.
    """
    text = unicodedata.normalize("NFKC", str(value)).strip()
    text = text.replace("\u2212", "-").replace("\u2013", "-")
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    if answer_type == "int":
        compact = re.sub(r"[\s_,]", "", text)
        compact = re.sub(r"^(?i:http)", "", compact).lstrip("+")
        if not re.fullmatch(r"-?\d{1,30}", compact):  # (int() of 4,300+ digits raises ValueError)
            raise InvalidAnswer("expects a whole number, such as -32000 or 404")
        return str(int(compact))
    if answer_type == "identifier":
        text = text.strip("[]` ").removesuffix("()").strip()
        text = re.sub(r"\s+", "", text)
        if not text:
            raise InvalidAnswer("expects a name, such as some_option or ClassName")
        return text.casefold()
    text = re.sub(r"\s+", " ", text)
    if not text:
        raise InvalidAnswer("expects some text")
    return text.casefold()


# ---------------------------------------------------------------- hashing and sealing

def digest(salt: str, qid: str, value: str) -> str:
    return hashlib.sha256(SEP.join((salt, qid, value)).encode("utf-8")).hexdigest()


def option_digest(salt: str, qid: str, letter: str, correct: bool) -> str:
    return digest(salt, qid, f"option:{letter}:{1 if correct else 0}")


def answer_digest(salt: str, qid: str, normalised: str) -> str:
    return digest(salt, qid, f"answer:{normalised}")


def _keystream(salt: str, qid: str, opener: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(SEP.join((salt, qid, "why", opener, str(counter))).encode("utf-8")).digest()
        counter += 1
    return bytes(out[:size])


def seal(text: str, salt: str, qid: str, opener: str) -> str:
    data = text.encode("utf-8")
    sealed = bytes(a ^ b for a, b in zip(data, _keystream(salt, qid, opener, len(data)), strict=True))
    return base64.b64encode(sealed).decode()


def unseal(blob: str, salt: str, qid: str, opener: str) -> str:
    data = base64.b64decode(blob)
    plain = bytes(a ^ b for a, b in zip(data, _keystream(salt, qid, opener, len(data)), strict=True))
    return plain.decode("utf-8", errors="replace")


# ---------------------------------------------------------------- the plain key (instructor edition)

@dataclass(frozen=True)
class PlainAnswer:
    qid: str
    correct: tuple[str, ...]            # letters (choice) or accepted normalised answers (short)
    why: dict[str, str]                 # letter -> explanation (choice); "right" -> explanation (short)
    wrong: dict[str, str]               # normalised known wrong short answer -> explanation
    verify: str = ""                    # optional script proving the key against the installed SDK
    shown: str = ""                     # short answers: the first accepted answer as written in key.toml

    # The questions grading asks of a key, answered in the clear (HashedAnswer answers them from digests).
    def option_correct(self, index: int, letter: str) -> bool:
        return letter in self.correct

    def option_why(self, index: int, letter: str) -> str:
        return self.why[letter]

    def accepts(self, normalised: str) -> bool:
        return normalised in self.correct

    def answer_why(self, normalised: str) -> str | None:
        return self.why["right"] if normalised in self.correct else self.wrong.get(normalised)


def load_plain_key(path: Path, bank: Bank) -> dict[str, PlainAnswer]:
    """Read and validate the instructor's key against the bank."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuizError(f"the instructor key {path} is missing (it is not part of the student edition)") from None
    except tomllib.TOMLDecodeError as exc:
        raise QuizError(f"{path} is not valid TOML: {exc}") from None
    extra = sorted(set(data) - {q.id for q in bank})
    if extra:
        raise QuizError(f"{path.name}: {extra[0]!r} is not a question in the bank")
    return {q.id: plain_answer(q, data.get(q.id), path) for q in bank}


def plain_answer(q: Question, entry: object, path: Path) -> PlainAnswer:
    """One question's key entry (`answer`, `why`, `wrong`, `verify`), validated against the question."""
    where = f"{path.name}: {q.id}"
    if not isinstance(entry, dict):
        raise QuizError(f"{where}: no key entry")
    unknown = set(entry) - {"answer", "why", "wrong", "verify"}
    if unknown:
        raise QuizError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    answer = entry.get("answer")
    answers = [answer] if isinstance(answer, str) else answer
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a for a in answers):
        raise QuizError(f"{where}: `answer` must be a string or a list of strings")
    why = entry.get("why", {})
    wrong = entry.get("wrong", {})
    if not isinstance(why, dict) or not all(isinstance(v, str) and v.strip() for v in why.values()):
        raise QuizError(f"{where}: `why` must map to non-empty explanations")
    if not isinstance(wrong, dict) or not all(isinstance(v, str) and v.strip() for v in wrong.values()):
        raise QuizError(f"{where}: `wrong` must map known wrong answers to explanations")
    verify = entry.get("verify", "")
    if not isinstance(verify, str):
        raise QuizError(f"{where}: `verify` must be a script (a string)")
    if q.is_choice:
        letters = [a.strip().upper() for a in answers]
        bad = [a for a in letters if a not in q.letters]
        if bad:
            raise QuizError(f"{where}: answer {bad[0]!r} is not one of the options {q.letters}")
        if len(set(letters)) != len(letters):
            raise QuizError(f"{where}: an answer letter is repeated")
        if q.is_multi and not 2 <= len(letters) < len(q.options):
            raise QuizError(f"{where}: a multiple-select question needs at least two correct options "
                            f"and at least one wrong one")
        if not q.is_multi and len(letters) != 1:
            raise QuizError(f"{where}: a single-answer question has exactly one correct option")
        if set(why) != set(q.letters):
            raise QuizError(f"{where}: `why` must explain every option {', '.join(q.letters)} "
                            f"(missing {', '.join(sorted(set(q.letters) - set(why))) or 'none'})")
        if wrong:
            raise QuizError(f"{where}: `wrong` is for short answers; explain options in `why`")
        return PlainAnswer(q.id, tuple(sorted(letters)), {k: v.strip() for k, v in why.items()}, {}, verify)
    try:
        accepted = tuple(dict.fromkeys(normalise(a, q.answer_type) for a in answers))
        known = {normalise(k, q.answer_type): v.strip() for k, v in wrong.items()}
    except InvalidAnswer as exc:
        raise QuizError(f"{where}: an answer is not a valid {q.answer_type}: {exc}") from None
    if set(why) != {"right"}:
        raise QuizError(f"{where}: a short answer needs exactly one explanation, why.right")
    if set(known) & set(accepted):
        raise QuizError(f"{where}: {sorted(set(known) & set(accepted))[0]!r} is both accepted and explained as wrong")
    return PlainAnswer(q.id, accepted, {"right": why["right"].strip()}, known, verify, shown=answers[0].strip())


# ---------------------------------------------------------------- the hashed key (student edition)

@dataclass(frozen=True)
class HashedAnswer:
    qid: str
    salt: str
    options: tuple[str, ...] = ()       # per-option correctness digests (choice)
    why: tuple[str, ...] = ()           # per-option sealed explanations (choice)
    accepted: tuple[str, ...] = ()      # accepted-answer digests (short)
    known: dict[str, str] | None = None  # answer digest -> sealed explanation (short)

    # -- choice
    def option_correct(self, index: int, letter: str) -> bool:
        return option_digest(self.salt, self.qid, letter, True) == self.options[index]

    def option_why(self, index: int, letter: str) -> str:
        return unseal(self.why[index], self.salt, self.qid, f"option:{letter}")

    # -- short
    def accepts(self, normalised: str) -> bool:
        return answer_digest(self.salt, self.qid, normalised) in self.accepted

    def answer_why(self, normalised: str) -> str | None:
        blob = (self.known or {}).get(answer_digest(self.salt, self.qid, normalised))
        return None if blob is None else unseal(blob, self.salt, self.qid, f"answer:{normalised}")


def load_hashed_key(path: Path, bank: Bank) -> dict[str, HashedAnswer]:
    """Read the student-edition key; it must cover exactly the bank's questions."""
    rebuild = "run `python -m checker.quiz build-key` (instructors) or update your copy of the course"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuizError(f"the answer key {path} is missing: {rebuild}") from None
    except tomllib.TOMLDecodeError as exc:
        raise QuizError(f"{path} is not valid TOML ({exc}): {rebuild}") from None
    questions = data.get("questions", {})
    key: dict[str, HashedAnswer] = {}
    for q in bank:
        entry = questions.get(q.id)
        where = f"{path.name}: {q.id}"
        if not isinstance(entry, dict) or not SALT.match(str(entry.get("salt", ""))):
            raise QuizError(f"{where} is missing or has no salt: {rebuild}")
        if q.is_choice:
            options, why = entry.get("options", []), entry.get("why", [])
            if len(options) != len(q.options) or len(why) != len(q.options):
                raise QuizError(f"{where} has {len(options)} option digests for {len(q.options)} options: {rebuild}")
            key[q.id] = HashedAnswer(q.id, entry["salt"], options=tuple(options), why=tuple(why))
        else:
            accepted, known = entry.get("accepted", []), entry.get("why", {})
            if not accepted:
                raise QuizError(f"{where} has no accepted answers: {rebuild}")
            key[q.id] = HashedAnswer(q.id, entry["salt"], accepted=tuple(accepted), known=dict(known))
    stale = sorted(set(questions) - {q.id for q in bank})
    if stale:
        raise QuizError(f"{path.name} has a key for {stale[0]!r}, which is not in the bank: {rebuild}")
    return key


def build_hashed_key(bank: Bank, plain: dict[str, PlainAnswer], previous: Path | None = None) -> str:
    """The student-edition key as TOML text. Salts of questions already in `previous` are kept,
    so rebuilding after an edit changes only the questions that changed."""
    salts: dict[str, str] = {}
    if previous is not None and previous.is_file():
        try:
            old = tomllib.loads(previous.read_text(encoding="utf-8")).get("questions", {})
            salts = {
                qid: e["salt"] for qid, e in old.items() if isinstance(e, dict) and SALT.match(str(e.get("salt", "")))
            }
        except (tomllib.TOMLDecodeError, OSError):
            salts = {}
    questions: dict[str, dict[str, object]] = {}
    for q in bank:
        answer = plain[q.id]
        salt = salts.get(q.id) or secrets.token_hex(8)
        if q.is_choice:
            questions[q.id] = {
                "salt": salt,
                "options": [option_digest(salt, q.id, letter, letter in answer.correct) for letter in q.letters],
                "why": [seal(answer.why[letter], salt, q.id, f"option:{letter}") for letter in q.letters],
            }
        else:
            known = {**{a: answer.why["right"] for a in answer.correct}, **answer.wrong}
            questions[q.id] = {
                "salt": salt,
                "accepted": [answer_digest(salt, q.id, a) for a in answer.correct],
                "why": {
                    answer_digest(salt, q.id, a): seal(text, salt, q.id, f"answer:{a}") for a, text in known.items()
                },
            }
    return header(HASHED_KEY_HEADER) + dumps_key(questions)


HASHED_KEY_HEADER = """\
The chapter quiz's answer key, student edition: salted SHA-256 digests and sealed explanations,
no plain answers. Generated from quiz/key.toml by `python -m checker.quiz build-key`; do not edit.

Per question: `salt`; for choice questions `options` (one digest per option, in the bank's
order: sha256(salt|id|option:<letter>:<1 correct, 0 not>)) and `why` (each option's explanation,
sealed under its letter); for short answers `accepted` (sha256(salt|id|answer:<normalised>))
and `why` (explanations of the right and of known wrong answers, keyed by the answer's digest and
sealed under the answer itself). checker/quiz/keys.py has the details."""


def disagreements(bank: Bank, plain: dict[str, PlainAnswer], hashed: dict[str, HashedAnswer]) -> list[str]:
    """Every way the student-edition key fails to say what the instructor's key says (empty: they agree)."""
    problems: list[str] = []
    for q in bank:
        p, h = plain[q.id], hashed[q.id]
        if q.is_choice:
            for index, letter in enumerate(q.letters):
                if h.option_correct(index, letter) != (letter in p.correct):
                    problems.append(f"{q.id}: option {letter} is {'correct' if letter in p.correct else 'wrong'} "
                                    f"in key.toml but not in the hashed key")
                if h.option_why(index, letter) != p.why[letter]:
                    problems.append(f"{q.id}: the explanation of option {letter} differs")
            continue
        for accepted in p.correct:
            if not h.accepts(accepted):
                problems.append(f"{q.id}: {accepted!r} is accepted in key.toml but not in the hashed key")
            if h.answer_why(accepted) != p.why["right"]:
                problems.append(f"{q.id}: the explanation of the right answer differs")
        for wrong, text in p.wrong.items():
            if h.accepts(wrong):
                problems.append(f"{q.id}: the hashed key accepts the wrong answer {wrong!r}")
            if h.answer_why(wrong) != text:
                problems.append(f"{q.id}: the explanation of the wrong answer {wrong!r} differs")
        if len(h.accepted) != len(p.correct):
            problems.append(f"{q.id}: the hashed key accepts {len(h.accepted)} answers, key.toml {len(p.correct)}")
    return problems
