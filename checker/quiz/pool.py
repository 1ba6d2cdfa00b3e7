"""The exam pool (`quiz/exam/pool.toml`, instructor edition only): variants of every practice question.

The practice quiz ships to students with a key their machine can check, so its answers can be
recovered (keys.py says how). An exam is therefore never drawn from the practice bank: each
practice question (an *idea*) has variants here that test the same idea with different numbers,
scenarios and options, and different right answers. A variant is a bank question plus `idea`
(the practice question's id) and its key in the same table (`answer`, `why`, `wrong`, `verify`,
as in quiz/key.toml), because the whole file stays with the instructor.

An exam asks one variant of every idea the pool covers (`Pool.ideas`), so it is worth the points
of those ideas. Rules the loader enforces: each variant belongs to its idea's lesson and is worth
the idea's points, and no variant id is a practice id. `practice_leaks` finds variants whose
right answer a student could carry over from the practice key; the course's tests require none.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from checker.quiz.bank import Bank, Question, QuizError, parse_question
from checker.quiz.keys import PlainAnswer, plain_answer

KEY_FIELDS = frozenset({"answer", "why", "wrong", "verify"})


@dataclass(frozen=True)
class Pool:
    path: Path
    variants: tuple[Question, ...]
    key: dict[str, PlainAnswer]
    _by_id: dict[str, Question] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id.update({q.id: q for q in self.variants})

    def get(self, qid: str) -> Question | None:
        return self._by_id.get(qid)

    def of(self, idea: str) -> list[Question]:
        """The variants of one practice question, in file order."""
        return [q for q in self.variants if q.idea == idea]

    def ideas(self, bank: Bank) -> list[Question]:
        """The practice questions the pool has variants of, in the bank's order: what an exam asks."""
        covered = {q.idea for q in self.variants}
        return [q for q in bank if q.id in covered]

    def points(self, bank: Bank) -> int:
        """What an exam drawn from this pool is worth."""
        return sum(q.points for q in self.ideas(bank))


def load_pool(path: Path, bank: Bank) -> Pool:
    """Read and validate the pool against the practice bank; any defect is one line naming the variant."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuizError(f"the exam pool {path} is missing (it is part of the instructor edition only)") from None
    except tomllib.TOMLDecodeError as exc:
        raise QuizError(f"{path} is not valid TOML: {exc}") from None
    entries = data.get("question", [])
    if not isinstance(entries, list) or not entries:
        raise QuizError(f"{path} has no [[question]] entries")
    variants: list[Question] = []
    key: dict[str, PlainAnswer] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise QuizError(f"{path.name}: question #{index + 1} is not a table")
        question = parse_question({k: v for k, v in entry.items() if k not in KEY_FIELDS}, index, path,
                                  extra=frozenset({"idea"}))
        where = f"{path.name}: {question.id}"
        idea = bank.get(question.idea)
        if idea is None:
            raise QuizError(f"{where}: idea {question.idea!r} is not a question of the practice bank")
        if bank.get(question.id) is not None or question.id in key:
            raise QuizError(f"{where}: the id is used twice (variant ids differ from practice ids and each other)")
        if question.lesson != idea.lesson or question.points != idea.points:
            raise QuizError(f"{where}: a variant has its idea's lesson ({idea.lesson}) and points ({idea.points})")
        key[question.id] = plain_answer(question, {k: v for k, v in entry.items() if k in KEY_FIELDS}, path)
        variants.append(question)
    return Pool(path=path, variants=tuple(variants), key=key)


def right_texts(question: Question, answer: PlainAnswer) -> set[str]:
    """What a right answer says, independent of letters and spelling: the right options' texts or the
    accepted short answers, whitespace collapsed and case-folded."""
    if question.is_choice:
        texts = [question.options[question.letters.index(letter)] for letter in answer.correct]
    else:
        texts = list(answer.correct)
    return {" ".join(text.split()).casefold() for text in texts}


def practice_leaks(bank: Bank, practice_key: dict[str, PlainAnswer], pool: Pool) -> list[str]:
    """Variants a student could answer from the practice key alone: a variant whose right answer (an
    option's text or an accepted short answer) is the right answer to any practice question."""
    known = set().union(*(right_texts(q, practice_key[q.id]) for q in bank))
    problems: list[str] = []
    for variant in pool.variants:
        carried = right_texts(variant, pool.key[variant.id]) & known
        if carried:
            problems.append(
                f"{variant.id}: its right answer {sorted(carried)[0]!r} is a right answer of the practice quiz"
            )
    return problems
