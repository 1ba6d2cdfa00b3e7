"""Maintainer commands for the quiz (not part of the student's `course` command).

    python -m checker.quiz build-key   regenerate quiz/key.hashed.toml and the reference answers
                                       (solutions/quiz-answers.toml) from quiz/key.toml
    python -m checker.quiz validate    check the bank and both keys agree (exit 1 if not)
    python -m checker.quiz stats       questions per lesson and kind, key balance, % code reading
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from checker.quiz.bank import Bank, QuizError, load_bank, load_settings
from checker.quiz.keys import PlainAnswer, build_hashed_key, disagreements, load_hashed_key, load_plain_key
from checker.quiz.tomlw import dumps_sections, header
from checker.registry import CourseError, load_course
from checker.student.progress import write_atomically

REFERENCE_HEADER = """\
The chapter quiz's REFERENCE ANSWERS (instructor edition, not for the student release): every
answer right, in the bank's own option order (seed ""). Generated from quiz/key.toml by
`python -m checker.quiz build-key`; `course check lesson-10 --against solutions` grades it."""


def reference_answers(bank: Bank, plain: dict[str, PlainAnswer]) -> str:
    answers: dict[str, object] = {}
    for q in bank:
        correct = plain[q.id].correct
        answers[q.id] = list(correct) if q.is_multi else (correct[0] if q.is_choice else plain[q.id].shown)
    return header(REFERENCE_HEADER) + dumps_sections({"quiz": {"seed": ""}, "answers": answers})


def stats(bank: Bank, plain: dict[str, PlainAnswer] | None) -> str:
    lines = [f"{len(bank)} questions, {bank.points} points"]
    per_lesson = Counter(q.lesson for q in bank)
    lines.append("per lesson: " + ", ".join(f"{n}: {per_lesson[n]}" for n in sorted(per_lesson)))
    kinds = Counter(
        q.kind + ("" if q.kind != "predict" else (" (options)" if q.is_choice else " (short)")) for q in bank
    )
    lines.append("per kind: " + ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())))
    code = sum(q.is_code_reading for q in bank)
    lines.append(f"code reading or predict the output: {code} ({100 * code / len(bank):.0f} %)")
    if plain:
        single = [plain[q.id].correct[0] for q in bank if q.is_choice and not q.is_multi]
        balance = Counter(single)
        lines.append(f"single-answer keys ({len(single)}): " + ", ".join(
            f"{letter}: {balance[letter]} ({100 * balance[letter] / len(single):.0f} %)" for letter in sorted(balance)))
        multi = Counter(letter for q in bank if q.is_multi for letter in plain[q.id].correct)
        lines.append(
            "multiple-select correct options by letter: " + ", ".join(f"{k}: {v}" for k, v in sorted(multi.items()))
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checker.quiz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build-key", "validate", "stats"])
    args = parser.parse_args(argv)
    try:
        settings = load_settings(load_course())
        bank = load_bank(settings.bank)
        plain = (
            load_plain_key(settings.plain_key, bank)
            if settings.plain_key.is_file() or args.command == "build-key"
            else None
        )
        if args.command == "build-key":
            assert plain is not None
            write_atomically(settings.key, build_hashed_key(bank, plain, previous=settings.key))
            write_atomically(settings.reference_answers, reference_answers(bank, plain))
            for path in (settings.key, settings.reference_answers):
                print(f"wrote {path.relative_to(settings.course.root)} ({len(bank)} questions)")
        elif args.command == "validate":
            hashed = load_hashed_key(settings.key, bank)
            problems = disagreements(bank, plain, hashed) if plain else []
            for problem in problems:
                print(f"disagree: {problem}", file=sys.stderr)
            if problems:
                return 1
            print(f"{len(bank)} questions; the bank and the key{'s agree' if plain else ' are consistent'}")
        else:
            print(stats(bank, plain))
    except (QuizError, CourseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
