"""Structural checks of a tagged PDF: PDF/A-3 level A and the machine-checkable part of PDF/UA-1.

No PDF/A or PDF/UA validator installs offline here, so the tests check, with pikepdf, what a
validator's machine checks would look at in the files this project writes (ISO 19005-3 level A,
ISO 14289-1 and the Matterhorn protocol's machine-checkable failure conditions that apply to
them). What no machine can check (that alternative texts are apt, that the reading order makes
sense) is not covered here.

``pdf_problems(pdf)`` returns every problem found, each as one sentence; a conforming file gives
none. Each check is shown to fail on a file that breaks it (tests/unit/test_render.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pikepdf

#: The standard structure types of ISO 32000-1, 14.8.4 (what a role map must lead to).
STANDARD_TYPES = frozenset(
    "Document Part Art Sect Div BlockQuote Caption TOC TOCI Index NonStruct Private P H H1 H2 H3 H4 H5 H6 "
    "L LI Lbl LBody Table TR TH TD THead TBody TFoot Span Quote Note Reference BibEntry Code Link Annot "
    "Ruby RB RT RP Warichu WT WP Figure Formula Form".split()
)
_TEXT_OPERATORS = frozenset({"Tj", "TJ", "'", '"'})
_PAINT_OPERATORS = _TEXT_OPERATORS | {"Do", "sh", "BI", "f", "F", "f*", "S", "s", "B", "B*", "b", "b*"}


def _elements(node: Any) -> Iterator[pikepdf.Dictionary]:
    """Every structure element under ``node``, in document (reading) order."""
    kids = node.get("/K")
    if kids is None:
        return
    for kid in kids if isinstance(kids, pikepdf.Array) else [kids]:
        if isinstance(kid, pikepdf.Dictionary) and kid.get("/Type") not in ("/MCR", "/OBJR") and "/S" in kid:
            yield kid
            yield from _elements(kid)


def _parent_tree(tree: Any) -> dict[int, Any]:
    entries: dict[int, Any] = {}
    nums = tree.get("/Nums")
    if nums is not None:
        for i in range(0, len(nums), 2):
            entries[int(nums[i])] = nums[i + 1]
    for kid in tree.get("/Kids", []):
        entries.update(_parent_tree(kid))
    return entries


_NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "pdfaExtension": "http://www.aiim.org/pdfa/ns/extension/",
    "pdfaSchema": "http://www.aiim.org/pdfa/ns/schema#",
    "pdfaProperty": "http://www.aiim.org/pdfa/ns/property#",
}
_PDFUA_NS = "http://www.aiim.org/pdfua/ns/id/"


def _field(node: Any, prefix: str, name: str) -> str | None:
    """An XMP field of ``node``, written as an attribute, an element, or an rdf:resource."""
    key = f"{{{_NS[prefix]}}}{name}"
    if key in node.attrib:
        return str(node.attrib[key])
    child = node.find(key)
    if child is None:
        return None
    return child.text if child.text and child.text.strip() else child.get(f"{{{_NS['rdf']}}}resource")


def _declares_pdfuaid(raw: bytes) -> bool:
    """Whether a PDF/A extension schema declares the pdfuaid namespace with its ``part`` property."""
    from lxml import etree

    root = etree.fromstring(raw[raw.index(b"<x:xmpmeta"):raw.rindex(b"</x:xmpmeta>") + len(b"</x:xmpmeta>")])
    for schema in root.iter():
        if _field(schema, "pdfaSchema", "namespaceURI") != _PDFUA_NS:
            continue
        if _field(schema, "pdfaSchema", "prefix") != "pdfuaid":
            continue
        properties = [p for p in schema.iter() if _field(p, "pdfaProperty", "name") == "part"]
        return any(_field(p, "pdfaProperty", "valueType") == "Integer"
                   and _field(p, "pdfaProperty", "category") == "internal" for p in properties)  # fmt: skip
    return False


def _same_instant(info_date: str, xmp_date: str) -> bool:
    from datetime import datetime

    from pikepdf.models.metadata import decode_pdf_date

    try:
        return decode_pdf_date(info_date) == datetime.fromisoformat(xmp_date.replace("Z", "+00:00"))
    except ValueError:
        return False


#: Document information entries and the XMP properties PDF/A requires them to agree with.
_INFO_XMP = {"/Title": "dc:title", "/Author": "dc:creator", "/Subject": "dc:description",
             "/Creator": "xmp:CreatorTool", "/Producer": "pdf:Producer", "/CreationDate": "xmp:CreateDate",
             "/ModDate": "xmp:ModifyDate"}  # fmt: skip


def _xmp_problems(pdf: pikepdf.Pdf) -> list[str]:
    problems = []
    meta = pdf.open_metadata()
    if (meta.get("pdfaid:part"), meta.get("pdfaid:conformance")) != ("3", "A"):
        problems.append(f"XMP: not PDF/A-3a (part {meta.get('pdfaid:part')}, level {meta.get('pdfaid:conformance')})")
    if meta.get("pdfuaid:part") != "1":
        problems.append("XMP: no PDF/UA-1 identification (pdfuaid:part 1)")
    raw = bytes(pdf.Root.Metadata.read_bytes())
    if not _declares_pdfuaid(raw):
        problems.append("XMP: the pdfuaid namespace is not declared in a PDF/A extension schema")
    if raw.count(b"<rdf:RDF") != 1:
        problems.append("XMP: not exactly one rdf:RDF element")
    if not meta.get("dc:title"):
        problems.append("XMP: no dc:title")
    for key, prop in _INFO_XMP.items():
        if key not in pdf.docinfo:
            continue
        info, xmp = str(pdf.docinfo[key]), meta.get(prop)
        if isinstance(xmp, list):
            xmp = "; ".join(xmp)
        same = _same_instant(info, str(xmp)) if key.endswith("Date") else info == xmp
        if xmp is None or not same:
            problems.append(f"metadata: the information dictionary's {key} ({info!r}) differs from XMP {prop} "
                            f"({xmp!r})")  # fmt: skip
    return problems


def _catalog_problems(pdf: pikepdf.Pdf) -> list[str]:
    root = pdf.Root
    problems = []
    if not bool(root.get("/MarkInfo", {}).get("/Marked", False)):
        problems.append("catalog: MarkInfo /Marked is not true")
    if not str(root.get("/Lang", "")):
        problems.append("catalog: no document language (/Lang)")
    if not bool(root.get("/ViewerPreferences", {}).get("/DisplayDocTitle", False)):
        problems.append("catalog: ViewerPreferences /DisplayDocTitle is not true")
    if "/StructTreeRoot" not in root:
        problems.append("catalog: no structure tree")
    return problems


def _tree_problems(pdf: pikepdf.Pdf) -> list[str]:
    problems = []
    struct_root = pdf.Root.StructTreeRoot
    role_map = struct_root.get("/RoleMap", {})
    levels = []
    for element in _elements(struct_root):
        tag = str(element.S)[1:]
        standard = str(role_map.get(f"/{tag}", f"/{tag}"))[1:]
        if standard not in STANDARD_TYPES:
            problems.append(f"structure: element type {tag} is neither standard nor role-mapped to one")
        if standard == "Figure" and not str(element.get("/Alt", "")).strip():
            problems.append("structure: a Figure has no alternative text (/Alt)")
        if standard == "TH":
            attributes = element.get("/A")
            attributes = list(attributes) if isinstance(attributes, pikepdf.Array) else [attributes or {}]
            if "/ID" not in element and not any("/Scope" in a for a in attributes):
                problems.append("structure: a TH has neither an /ID (for Headers) nor a /Scope")
        if standard in ("H1", "H2", "H3", "H4", "H5", "H6"):
            levels.append(int(standard[1]))
    if levels and levels[0] != 1:
        problems.append(f"structure: the first heading is H{levels[0]}, not H1")
    for before, after in zip(levels, levels[1:], strict=False):
        if after > before + 1:
            problems.append(f"structure: heading level skipped (H{before} followed by H{after})")
            break
    return problems


def _annotation_problems(pdf: pikepdf.Pdf) -> list[str]:
    problems: list[str] = []
    parents = _parent_tree(pdf.Root.StructTreeRoot.get("/ParentTree", {}))
    for number, page in enumerate(pdf.pages, start=1):
        annots = page.obj.get("/Annots")
        if not annots:
            continue
        if page.obj.get("/Tabs") != "/S":
            problems.append(f"page {number}: has annotations but /Tabs is not /S")
        for annot in annots:
            subtype = str(annot.get("/Subtype"))
            if subtype == "/Popup":
                continue
            where = f"page {number}: a {subtype[1:]} annotation"
            if "/StructParent" not in annot:
                problems.append(f"{where} is outside the structure tree (no /StructParent)")
                continue
            element = parents.get(int(annot.StructParent))
            kids = element.get("/K") if isinstance(element, pikepdf.Dictionary) else None
            kids = list(kids) if isinstance(kids, pikepdf.Array) else [kids]
            objrs = [k for k in kids if isinstance(k, pikepdf.Dictionary) and k.get("/Type") == "/OBJR"]
            if not any(k.Obj.objgen == annot.objgen for k in objrs):
                problems.append(f"{where}: its structure element does not point back at it")
                continue
            expected = {"/Link": "/Link", "/Widget": "/Form"}.get(subtype, "/Annot")
            if str(element.S) != expected:
                problems.append(f"{where} is tagged {element.S}, not {expected}")
            if subtype == "/Widget" and not str(annot.get("/TU", "")).strip():
                problems.append(f"{where} (form field) has no description (/TU)")
            if subtype != "/Widget" and not (str(annot.get("/Contents", "")).strip() or str(element.get("/Alt", ""))):
                problems.append(f"{where} has no description (/Contents)")
    return problems


def _content_problems(pdf: pikepdf.Pdf) -> list[str]:
    problems = []
    for number, page in enumerate(pdf.pages, start=1):
        depth = 0
        unmarked: set[str] = set()
        for _, operator in pikepdf.parse_content_stream(page):
            op = str(operator)
            if op in ("BDC", "BMC"):
                depth += 1
            elif op == "EMC":
                depth -= 1
            elif op in _PAINT_OPERATORS and depth == 0:
                unmarked.add(op)
        if unmarked:
            problems.append(f"page {number}: content outside marked content ({', '.join(sorted(unmarked))}): "
                            "neither tagged nor an artifact")  # fmt: skip
    return problems


def _font_problems(pdf: pikepdf.Pdf) -> list[str]:
    problems = []
    seen: set[tuple[int, int]] = set()
    for page in pdf.pages:
        fonts = page.obj.get("/Resources", {}).get("/Font", {})
        for _, font in fonts.items():
            if font.objgen in seen:
                continue
            seen.add(font.objgen)
            name = str(font.get("/BaseFont", "?"))
            descendants = list(font.get("/DescendantFonts", [])) or [font]
            if not all("/FontFile2" in d.get("/FontDescriptor", {}) or "/FontFile3" in d.get("/FontDescriptor", {})
                       or "/FontFile" in d.get("/FontDescriptor", {}) for d in descendants):  # fmt: skip
                problems.append(f"font {name} is not embedded")
            if "/ToUnicode" not in font:
                problems.append(f"font {name} has no ToUnicode map (PDF/A level A)")
    return problems


def pdf_problems(data: bytes | Any) -> list[str]:
    """Every PDF/A-3a and machine-checkable PDF/UA-1 problem of the PDF ``data`` (bytes or a path)."""
    import io

    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with pikepdf.open(source) as pdf:
        return [
            *_xmp_problems(pdf),
            *_catalog_problems(pdf),
            *(_tree_problems(pdf) + _annotation_problems(pdf) if "/StructTreeRoot" in pdf.Root else []),
            *_content_problems(pdf),
            *_font_problems(pdf),
        ]
