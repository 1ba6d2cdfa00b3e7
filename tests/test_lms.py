"""`course quiz export`: what learning platforms import, checked by parties other than our own writer.

* QTI: the Canvas QTI 1.2 package text2qti writes is validated against the IMS QTI 1.2.1 ASI
  schema. No QTI XSD is published in any PyPI or npm package we could find; the official DTD
  binding of the same schema is, inside the sdist of the PyPI package `pyslet`
  (pyslet-0.7.20170805.tar.gz, unittests/data_imsqtiv1p2p1/ims_qtiasiv1p2p1.dtd, IMS GLC, Final
  release 14 Feb 2003), and ships here as tests/data/qti/ims_qtiasiv1p2p1.dtd.
* GIFT: round-tripped through gift-pegjs (npm, MIT, the parser Moodle tool authors maintain; the
  GIFT parsers on PyPI have not been released since 2017 and 2022 or drop feedback entirely).
* Moodle XML: parsed back, every grade fraction one that Moodle accepts.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from lxml import etree

from checker.quiz.lms import MOODLE_FRACTIONS, explanation, option_html, pool_items, question_html, to_gift, to_moodle_xml, to_qti
from tests.conftest import COURSE
from tests.coursecopy import COURSE_SCRIPT, course_env
from tests.exam_helpers import BANK, POOL, SECRET, exam_file, form

DTD = Path(__file__).parent / "data" / "qti" / "ims_qtiasiv1p2p1.dtd"
GIFT_PEGJS = "gift-pegjs@1.0.2"
ITEMS = pool_items(BANK, POOL)


def _qti_assessment(package: bytes) -> etree._Element:
    with zipfile.ZipFile(__import__("io").BytesIO(package)) as archive:
        names = [n for n in archive.namelist() if n.endswith(".xml") and not n.endswith(("assessment_meta.xml", "imsmanifest.xml"))]
        assert len(names) == 1, archive.namelist()
        assert "imsmanifest.xml" in archive.namelist()
        return etree.fromstring(archive.read(names[0]))


def _as_dtd_document(root: etree._Element) -> etree._Element:
    """The document as the DTD describes it: a DTD knows no XML namespaces (so the namespace binding and
    xsi:schemaLocation go), and the contents of QTI's *_extension elements are, by the specification,
    each platform's own (Canvas puts points_per_item there)."""
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]
    for name in list(root.attrib):
        del root.attrib[name]
    etree.cleanup_namespaces(root)
    for extension in root.iter("selection_extension", "mat_extension", "response_extension", "render_extension"):
        for child in list(extension):
            extension.remove(child)
    return root


def test_qti_export_is_valid_qti_1_2(tmp_path: Path) -> None:
    root = _qti_assessment(to_qti(ITEMS, COURSE.title, "exam pool"))
    stripped = [child.tag for ext in root.iter("{*}selection_extension") for child in ext]
    assert set(stripped) <= {"{http://www.imsglobal.org/xsd/ims_qtiasiv1p2}points_per_item"}, stripped
    dtd = etree.DTD(str(DTD))
    document = _as_dtd_document(root)
    assert dtd.validate(document), "\n".join(str(e) for e in list(dtd.error_log)[:10])
    groups = [s for s in document.iter("section") if s.find("selection_ordering") is not None]
    assert len(groups) == len(POOL.ideas(BANK)), "one question group per practice question"
    for group, idea in zip(groups, POOL.ideas(BANK)):
        assert group.findtext("selection_ordering/selection/selection_number") == "1"
        assert [item.get("title") for item in group.iter("item")] == [v.id for v in POOL.of(idea.id)]
    for item, source in zip(document.iter("item"), ITEMS):
        feedback = {fb.get("ident") for fb in item.iter("itemfeedback")}
        expected = 1 + (len(source.question.options) if source.question.is_choice else 0)
        assert len(feedback) >= expected, f"{source.question.id}: feedback per option and the explanation"


def test_qti_of_the_poisoned_option_is_still_valid() -> None:
    """Markup, braces, backticks and a dollar sign in a question survive the trip through text2qti."""
    from dataclasses import replace

    from checker.quiz.lms import Item

    base = next(item for item in ITEMS if item.question.kind == "single")
    q = replace(base.question, prompt="Cost: $5 or `{x}` <b>bold</b> & more", options=(
        "`a` <i>", "b {c}", "$d$ and ``e``", *base.question.options[3:]))
    root = _as_dtd_document(_qti_assessment(to_qti([Item(q, base.key)], COURSE.title, "one")))
    assert etree.DTD(str(DTD)).validate(root)


@pytest.fixture(scope="session")
def gift_parser(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        pytest.skip("npm and node are needed to fetch the GIFT parser (gift-pegjs); .ci/run installs them")
    prefix = tmp_path_factory.mktemp("gift-pegjs")
    proc = subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), GIFT_PEGJS],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"npm could not install {GIFT_PEGJS}: {proc.stderr[-800:]}"
    script = prefix / "parse.js"
    script.write_text('const { parse } = require("gift-pegjs");\n'
                      'process.stdout.write(JSON.stringify(parse(require("fs").readFileSync(0, "utf8"))));\n')
    return script


def _parse_gift(script: Path, text: str) -> list[dict]:
    proc = subprocess.run([shutil.which("node"), str(script)], input=text, capture_output=True, text=True, timeout=60,
                          cwd=script.parent)
    assert proc.returncode == 0, f"gift-pegjs rejected the export: {proc.stderr[-1500:]}"
    return json.loads(proc.stdout)


def test_gift_export_round_trips_through_a_gift_parser(gift_parser: Path) -> None:
    parsed = _parse_gift(gift_parser, to_gift(ITEMS, COURSE.title))
    categories = [p["title"] for p in parsed if p["type"] == "Category"]
    assert categories == [f"$course$/{COURSE.title} exam/{idea.id}" for idea in POOL.ideas(BANK)]
    questions = [p for p in parsed if p["type"] != "Category"]
    assert len(questions) == len(ITEMS)
    for got, item in zip(questions, ITEMS):
        q, key = item.question, item.key
        assert got["title"] == q.id and got["stem"] == {"format": "html", "text": question_html(q)}, q.id
        assert got["globalFeedback"]["text"] == explanation(q, key), q.id
        if q.is_choice:
            assert got["type"] == "MC", q.id
            assert [c["text"]["text"] for c in got["choices"]] == [option_html(q, o) for o in q.options], q.id
            assert [c["feedback"]["text"] for c in got["choices"]] == [key.why[letter] for letter in q.letters], q.id
            if q.is_multi:
                right = [c["weight"] > 0 for c in got["choices"]]
                assert right == [letter in key.correct for letter in q.letters], q.id
                assert abs(sum(c["weight"] for c in got["choices"] if c["weight"] > 0) - 100) < 0.01, q.id
            else:
                assert [c["isCorrect"] for c in got["choices"]] == [letter in key.correct for letter in q.letters], q.id
        elif q.answer_type == "int":
            assert got["type"] == "Numerical", q.id
            right = [c for c in got["choices"] if c.get("weight") in (None, 100)]
            assert {str(c["text"]["number"]) for c in right} == set(key.correct), q.id
        else:
            assert got["type"] == "Short", q.id
            right = {c["text"]["text"] for c in got["choices"] if c["isCorrect"] and c.get("weight") in (None, 100)}
            assert set(key.correct) <= {r.casefold() for r in right}, q.id


def test_moodle_xml_export_carries_points_feedback_and_valid_grades() -> None:
    root = ET.fromstring(to_moodle_xml(ITEMS, COURSE.title))
    questions = [q for q in root.iter("question") if q.get("type") != "category"]
    assert len(questions) == len(ITEMS)
    allowed = {round(f, 5) for f in MOODLE_FRACTIONS} | {0.0}
    for node, item in zip(questions, ITEMS):
        q, key = item.question, item.key
        assert node.findtext("name/text") == q.id and node.findtext("idnumber") == q.id
        assert node.findtext("defaultgrade") == str(q.points)
        assert node.findtext("questiontext/text") == question_html(q)
        assert html.unescape(node.findtext("generalfeedback/text")) == explanation(q, key)
        answers = node.findall("answer")
        fractions = [float(a.get("fraction")) for a in answers]
        assert all(round(abs(f), 5) in allowed for f in fractions), (q.id, fractions)
        if q.is_choice:
            assert [html.unescape(a.findtext("feedback/text")) for a in answers] == [key.why[x] for x in q.letters]
            assert node.findtext("single") == ("false" if q.is_multi else "true")
            positive = sum(f for f in fractions if f > 0)
            assert abs(positive - 100) < 0.01, (q.id, fractions)
            if q.is_multi:
                assert abs(sum(f for f in fractions if f < 0) + 100) < 0.01, (q.id, fractions)
        else:
            assert {a.findtext("text") for a in answers if a.get("fraction") == "100"} >= set(key.correct), q.id


def test_export_of_one_exam_form_and_a_tampered_one(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET.hex())
    good = tmp_path / "ada.exam.toml"
    good.write_text(exam_file(form("ada")))
    out = tmp_path / "ada.xml"
    proc = subprocess.run([COURSE_SCRIPT, "quiz", "export", "--format", "moodle-xml", "--exam", str(good),
                           "--secret", str(secret), "--out", str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=course_env(COURSE.root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [n.findtext("name/text") for n in ET.parse(out).getroot().iter("question")]
    assert names == [item["id"] for item in form("ada")["question"]], "the form's variants, in its order"
    good.write_text(exam_file(form("ada")).replace("points = 1\n", "points = 2\n", 1))
    proc = subprocess.run([COURSE_SCRIPT, "quiz", "export", "--format", "gift", "--exam", str(good), "--secret",
                           str(secret), "--out", str(tmp_path / "x")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=course_env(COURSE.root))
    assert proc.returncode == 2 and "signature does not match" in proc.stderr and "Traceback" not in proc.stderr
