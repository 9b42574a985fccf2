"""JUnit XML of a report, for CI systems that show test results."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree


def junit_xml(results: dict[str, dict[str, Any]],
              verdicts: list[dict[str, Any]] | None = None) -> str:
    """JUnit XML: a suite per model (a case per input) and one for the thresholds.

    An input fails when an attack beat its certificate (``violation``) and is skipped
    when it abstains; a threshold fails when it does not hold.
    """
    root = ElementTree.Element("testsuites", name="rcert")
    for name, res in results.items():
        suite = ElementTree.SubElement(root, "testsuite", name=name)
        for row in res["inputs"]:
            case = ElementTree.SubElement(suite, "testcase", classname=f"rcert.{name}",
                                          name=f"input {row['index']}")
            if row.get("violation"):
                ElementTree.SubElement(case, "failure", message=(
                    f"attack broke the certificate: margin_empirical "
                    f"{row['margin_empirical']} < bound_certified {row['bound_certified']}"))
            elif row.get("abstain"):
                ElementTree.SubElement(case, "skipped", message="abstained: p_lower <= m")
    if verdicts:
        suite = ElementTree.SubElement(root, "testsuite", name="thresholds")
        for v in verdicts:
            case = ElementTree.SubElement(suite, "testcase", classname=f"rcert.{v['model']}",
                                          name=v["threshold"])
            if not v["passed"]:
                ElementTree.SubElement(case, "failure", message=v["message"])
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for suite in root:
        counts = {"tests": len(suite), "failures": len(suite.findall("testcase/failure")),
                  "skipped": len(suite.findall("testcase/skipped"))}
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("errors", "0")
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
