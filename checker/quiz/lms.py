"""`course quiz export`: the exam pool (or one exam form) in the formats learning platforms import.

    qti         a Canvas QTI 1.2 package (.zip), written by text2qti; Canvas, Brightspace and
                other QTI 1.2 importers take it. The pool becomes one question group per practice
                question ("pick 1"), so the platform draws each student's variant itself.
    gift        Moodle's GIFT text format: one question category per practice question, so a
                Moodle quiz can add "a random question from each category".
    moodle-xml  Moodle XML, the same categories with everything GIFT cannot say (an id number per
                question, the shuffle setting, feedback per right and wrong short answer).

Every question carries its points, the feedback of each option (the misconception it stands
for), and the explanation of the right answer as general feedback. Exports come from the
instructor's pool, so they hold the answers: upload them, do not share them.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from xml.etree import ElementTree as ET

import markdown

from checker.quiz.bank import Bank, Question
from checker.quiz.forms import Exam
from checker.quiz.keys import PlainAnswer
from checker.quiz.pool import Pool

FORMATS = ("qti", "gift", "moodle-xml")
# Moodle accepts only these grade fractions (question/format.php); select-all weights come from them.
MOODLE_FRACTIONS = (100.0, 90.0, 83.33333, 80.0, 75.0, 70.0, 66.66667, 60.0, 50.0, 40.0, 33.33333, 30.0, 25.0, 20.0,
                    16.66667, 14.28571, 12.5, 11.11111, 10.0, 5.0)


@dataclass(frozen=True)
class Item:
    question: Question
    key: PlainAnswer
    group: str = ""            # the practice question it is a variant of (a category / question group)


def pool_items(bank: Bank, pool: Pool) -> list[Item]:
    """Every variant, grouped by practice question in the bank's order."""
    return [Item(v, pool.key[v.id], idea.id) for idea in bank for v in pool.of(idea.id)]


def form_items(exam: Exam, pool: Pool) -> list[Item]:
    """One exam form's questions, in its order (the platform shuffles options itself)."""
    items = []
    for entry in exam.items:
        question = pool.get(entry.question.id)
        if question is None:
            raise ValueError(f"{entry.question.id} is not in {pool.path.name}")
        items.append(Item(question, pool.key[question.id]))
    return items


# ---------------------------------------------------------------- shared pieces

def _fence(code: str) -> str:
    ticks = "`" * max(3, max((len(run) for run in re.findall(r"`+", code)), default=0) + 1)
    return f"{ticks}python\n{code}\n{ticks}"


def question_markdown(q: Question) -> str:
    """The prompt and its code as Markdown."""
    return q.prompt + (f"\n\n{_fence(q.code)}" if q.code else "")


def question_html(q: Question) -> str:
    return markdown.markdown(question_markdown(q), extensions=["fenced_code"])


def option_html(q: Question, text: str) -> str:
    """An option as HTML: code and program output verbatim, prose as Markdown."""
    if q.code_options or q.kind == "predict":
        escaped = html.escape(text, quote=False)
        return f"<pre><code>{escaped}</code></pre>" if "\n" in text else f"<code>{escaped}</code>"
    rendered = markdown.markdown(text)
    return (
        rendered[3:-4]
        if rendered.startswith("<p>") and rendered.endswith("</p>") and rendered.count("<p>") == 1
        else rendered
    )


def explanation(q: Question, key: PlainAnswer) -> str:
    """The general feedback: why the right answer is right."""
    if q.is_choice:
        return " ".join(key.why[letter] for letter in key.correct)
    return key.why["right"]


def _weights(q: Question, key: PlainAnswer) -> dict[str, float]:
    """Percent per option: single choice 100/0; select-all splits +100 over the right options and -100 over
    the wrong ones (the course's own partial credit, which platforms clamp at 0 the same way)."""
    if not q.is_multi:
        return {letter: 100.0 if letter in key.correct else 0.0 for letter in q.letters}
    right = len(key.correct)
    wrong = len(q.options) - right
    return {letter: (100.0 / right if letter in key.correct else -100.0 / wrong) for letter in q.letters}


def _moodle_fraction(percent: float) -> str:
    closest = min(MOODLE_FRACTIONS, key=lambda f: abs(f - abs(percent))) if percent else 0.0
    if percent and abs(closest - abs(percent)) > 0.01:
        raise ValueError(f"{percent:g} % is not a grade Moodle accepts")
    value = closest if percent >= 0 else -closest
    return f"{value:g}" if value == int(value) else f"{value:.5f}"


def _short_forms(key: PlainAnswer) -> list[str]:
    """Accepted short answers as a student would type them (the key's form first, then the normalised ones)."""
    return list(dict.fromkeys([key.shown, *key.correct]))


def _category(course_title: str, group: str) -> str:
    return f"$course$/{course_title} exam/{group}"


# ---------------------------------------------------------------- GIFT

_GIFT_SPECIAL = re.compile(r"([~=#{}:\\])")


def gift_escape(text: str) -> str:
    """GIFT text: its control characters escaped, newlines as \\n (a blank line would end the question)."""
    return _GIFT_SPECIAL.sub(r"\\\1", text).replace("\r", "").replace("\n", "\\n")


def _gift_question(item: Item) -> str:
    q, key = item.question, item.key
    lines = [f"// {q.id} (lesson {q.lesson}, {q.points} pt{'s' if q.points > 1 else ''})",
             f"::{gift_escape(q.id)}::[html]{gift_escape(question_html(q))}{{"]
    if q.is_choice:
        weights = _weights(q, key)
        for index, letter in enumerate(q.letters):
            weight = weights[letter]
            mark = "=" if not q.is_multi and weight == 100 else "~"
            percent = f"%{_moodle_fraction(weight)}%" if q.is_multi else ""
            lines.append(f"\t{mark}{percent}{gift_escape(option_html(q, q.options[index]))}"
                         f"#{gift_escape(key.why[letter])}")
    elif q.answer_type == "int":
        lines.append("\t#")
        for answer in key.correct:
            lines.append(f"\t={answer}:0#{gift_escape(key.why['right'])}")
        for answer, why in key.wrong.items():
            lines.append(f"\t=%0%{answer}:0#{gift_escape(why)}")
    else:
        for answer in _short_forms(key):
            lines.append(f"\t={gift_escape(answer)}#{gift_escape(key.why['right'])}")
        for answer, why in key.wrong.items():
            lines.append(f"\t=%0%{gift_escape(answer)}#{gift_escape(why)}")
    lines.append(f"\t####{gift_escape(explanation(q, key))}")
    lines.append("}")
    return "\n".join(lines)


def to_gift(items: list[Item], course_title: str) -> str:
    """GIFT text; points are not part of GIFT, so each question's comment line states them."""
    out = [
        f"// {course_title}: exam questions with their answers. Import into Moodle's question bank (GIFT format).",
        "// Points per question are in the comment above it; Moodle XML carries them as each question's default mark.",
        "",
    ]
    current = None
    for item in items:
        if item.group and item.group != current:
            current = item.group
            out += [f"$CATEGORY: {_category(course_title, item.group)}", ""]
        out += [_gift_question(item), ""]
    return "\n".join(out)


# ---------------------------------------------------------------- Moodle XML

def _text(parent: ET.Element, tag: str, value: str, fmt: str | None = "html") -> ET.Element:
    node = ET.SubElement(parent, tag, {"format": fmt} if fmt else {})
    ET.SubElement(node, "text").text = value
    return node


def _moodle_question(parent: ET.Element, item: Item) -> None:
    q, key = item.question, item.key
    qtype = "multichoice" if q.is_choice else ("numerical" if q.answer_type == "int" else "shortanswer")
    node = ET.SubElement(parent, "question", {"type": qtype})
    _text(node, "name", q.id, fmt=None)
    _text(node, "questiontext", question_html(q))
    _text(node, "generalfeedback", html.escape(explanation(q, key), quote=False))
    ET.SubElement(node, "defaultgrade").text = str(q.points)
    ET.SubElement(node, "penalty").text = "0"
    ET.SubElement(node, "hidden").text = "0"
    ET.SubElement(node, "idnumber").text = q.id
    if q.is_choice:
        ET.SubElement(node, "single").text = "false" if q.is_multi else "true"
        ET.SubElement(node, "shuffleanswers").text = "true"
        ET.SubElement(node, "answernumbering").text = "ABCD"
        weights = _weights(q, key)
        for index, letter in enumerate(q.letters):
            answer = ET.SubElement(node, "answer", {"fraction": _moodle_fraction(weights[letter]), "format": "html"})
            ET.SubElement(answer, "text").text = option_html(q, q.options[index])
            _text(answer, "feedback", html.escape(key.why[letter], quote=False))
        return
    if qtype == "shortanswer":
        ET.SubElement(node, "usecase").text = "0"
    accepted = key.correct if qtype == "numerical" else _short_forms(key)
    for value, fraction, why in ([(a, "100", key.why["right"]) for a in accepted]
                                 + [(a, "0", w) for a, w in key.wrong.items()]):
        answer = ET.SubElement(node, "answer", {"fraction": fraction, "format": "moodle_auto_format"})
        ET.SubElement(answer, "text").text = value
        _text(answer, "feedback", html.escape(why, quote=False))
        if qtype == "numerical":
            ET.SubElement(answer, "tolerance").text = "0"


def to_moodle_xml(items: list[Item], course_title: str) -> str:
    quiz = ET.Element("quiz")
    current = None
    for item in items:
        if item.group and item.group != current:
            current = item.group
            category = ET.SubElement(quiz, "question", {"type": "category"})
            _text(category, "category", _category(course_title, item.group), fmt=None)
        _moodle_question(quiz, item)
    ET.indent(quiz)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(quiz, encoding="unicode") + "\n"


# ---------------------------------------------------------------- QTI (via text2qti)

def _t2q_block(text: str, indent: int = 4) -> str:
    """Markdown for text2qti: continuation lines indented under the first."""
    pad = " " * indent
    return "\n".join((pad + line if line.strip() else "") if i else line for i, line in enumerate(text.splitlines()))


def _t2q_option(q: Question, text: str) -> str:
    if q.code_options or q.kind == "predict":
        if "\n" in text:
            return _fence(text).replace("```python", "```text", 1) if "```" not in text else _fence(text)
        ticks = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
        pad = " " if text.startswith("`") or text.endswith("`") else ""
        return f"{ticks}{pad}{text}{pad}{ticks}"
    return text


def _t2q_question(item: Item, number: int) -> list[str]:
    q, key = item.question, item.key
    points = [] if item.group else [f"Points: {q.points}"]      # (a group sets its questions' points)
    start = f"{number}.".ljust(max(4, len(str(number)) + 2))     # text2qti aligns wrapped lines with the text
    lines = [f"Title: {q.id}", *points, f"{start}{_t2q_block(question_markdown(q), len(start))}",
             f"... {_t2q_block(explanation(q, key))}"]
    if q.is_choice:
        for index, letter in enumerate(q.letters):
            right = letter in key.correct
            mark = (
                ("[*]" if right else "[ ]")
                if q.is_multi
                else (f"*{'abcdefgh'[index]})" if right else f"{'abcdefgh'[index]}) ")
            )
            lines.append(f"{mark} {_t2q_block(_t2q_option(q, q.options[index]))}")
            lines.append(f"... {_t2q_block(key.why[letter])}")
    elif q.answer_type == "int" and "0" not in key.correct:   # (text2qti's numerical answers cannot be 0)
        lines.append(f"=   {key.correct[0]}")
    else:
        lines.extend(f"*   {answer}" for answer in _short_forms(key))
    return lines


def to_qti(items: list[Item], course_title: str, title: str) -> bytes:
    """A Canvas QTI 1.2 zip. Variants of one practice question form a group that draws one of them."""
    from text2qti.config import Config
    from text2qti.qti import QTI
    from text2qti.quiz import Quiz

    lines = [f"Quiz title: {title}", f"Quiz description: {course_title}: one question per idea of the chapter quiz.",
             "shuffle answers: true", "show correct answers: false", ""]
    number = 0
    index = 0
    while index < len(items):
        group = items[index].group
        members = [items[index]]
        while group and index + len(members) < len(items) and items[index + len(members)].group == group:
            members.append(items[index + len(members)])
        if group:
            lines += ["GROUP", "pick: 1", f"points per question: {members[0].question.points}", ""]
        for item in members:
            number += 1
            lines += _t2q_question(item, number) + [""]
        if group:
            lines += ["END_GROUP", ""]
        index += len(members)
    quiz = Quiz("\n".join(lines), config=Config(), source_name=title)
    return QTI(quiz).zip_bytes()
