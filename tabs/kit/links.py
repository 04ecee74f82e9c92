"""Links that reproduce a tab's state: a field's value <-> its text in a query string, reading a link (what does
not fit is ignored with one sentence), writing one (only the settings that differ from the start-up values).

Python builds the query string; the browser adds its own address (LINK_JS).
"""
from __future__ import annotations

import html
import json
import math
from urllib.parse import quote, urlencode

import gradio as gr

GLOBAL_KEYS = {"tab", "lecture"}  # plus Gradio's own: any key starting with "__" (__theme), and view=api
GRADIO_VIEWS = {"api"}  # ?view=api opens Gradio's API page: that one value of `view` is Gradio's, not a tab's field
SECTION = "section"  # link key: the part of a tab a link opens and scrolls to (an accordion, e.g. section=graph)
MAX_TEXT = 20_000  # characters of one text value accepted from a link
MAX_LINK_TEXT = 2_000  # longer texts are left out of a copied link (a URL this long breaks in e-mails and servers)
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}

# The browser adds its own address (that of the Space, or localhost), keeps a ?__theme=dark already in the address,
# copies the link and shows it.
LINK_JS = """(qs) => {
  if (!qs || qs.startsWith('http')) return qs;
  const here = new URLSearchParams(window.location.search);
  const params = new URLSearchParams(qs);
  if (here.get('__theme')) params.set('__theme', here.get('__theme'));
  const url = window.location.origin + window.location.pathname + '?' + params.toString();
  try { navigator.clipboard.writeText(url).catch(() => {}); } catch (e) {}
  return url;
}"""


# Scroll to a tab's section (an accordion a link or the course map opened) once it is shown: the tab selection and
# the accordion's opening arrive first, so wait until the block has a size, then scroll (again a moment later, as
# the refreshed outputs above it may still grow).
SCROLL_JS = """
const tgScroll = (id) => {
  let tries = 0;
  const go = () => {
    const el = document.getElementById(id);
    if (el && el.offsetParent !== null && el.getBoundingClientRect().height > 0) {
      el.scrollIntoView({block: 'start'});
      setTimeout(() => el.scrollIntoView({block: 'start'}), 1200);
      return;
    }
    if (++tries < 100) setTimeout(go, 100);
  };
  go();
};"""


def section_from_url_js(targets: dict) -> str:
    """demo.load's script: the link's tab and section -> the block's elem_id ({tab: {section: elem_id}})."""
    return ("() => {" + SCROLL_JS + f"""
  const targets = {json.dumps(targets)};
  const q = new URLSearchParams(window.location.search);
  const id = (targets[q.get('tab')] || {{}})[q.get('{SECTION}')];
  if (id) tgScroll(id);
  return [];
}}""")


def scroll_js(elem_id: str) -> str:
    """A course-map button's script: scroll to one block."""
    return "() => {" + SCROLL_JS + f"\n  tgScroll({json.dumps(elem_id)});\n  return [];\n}}"


# ---- one field's value <-> link text ----------------------------------------------------------------------------
def field_kind(comp) -> str:
    if isinstance(comp, gr.Checkbox):
        return "bool"
    if isinstance(comp, gr.CheckboxGroup):
        return "multi"
    if isinstance(comp, (gr.Radio, gr.Dropdown)):
        return "choice"
    if isinstance(comp, (gr.Slider, gr.Number)):
        return "number"
    return "text"


def choice_values(comp) -> list:
    return [c[1] if isinstance(c, (tuple, list)) else c for c in (comp.choices or [])]


def encode_value(value) -> str:
    """A field value as link text: booleans 1/0, whole numbers without ".0", lists comma-separated."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(encode_value(v) for v in value)
    return str(value)


def decode_value(comp, text: str):
    """Link text -> a value the component accepts. Raises ValueError with the reason in plain words."""
    kind = field_kind(comp)
    text = str(text)
    if kind == "bool":
        if text.strip().lower() not in TRUE | FALSE:
            raise ValueError("expected 1 or 0.")
        return text.strip().lower() in TRUE
    if kind == "number":
        return _decode_number(comp, text)
    if kind == "choice":
        allowed = choice_values(comp)
        match = [c for c in allowed if encode_value(c) == text]
        if not match:
            raise ValueError(f"expected one of {', '.join(map(encode_value, allowed))}.")
        return match[0]
    if kind == "multi":
        allowed = choice_values(comp)
        names = [encode_value(c) for c in allowed]
        items = split_choices(text, names)
        bad = [x for x in items if x not in names]
        if bad:
            raise ValueError(f"{bad[0]!r} is not one of {', '.join(names)}.")
        return [c for c, n in zip(allowed, names) if n in items]
    if len(text) > MAX_TEXT:
        raise ValueError(f"longer than {MAX_TEXT:,} characters.")
    return text


def split_choices(text: str, names: list) -> list:
    """A comma-joined list of choices back into its items, also where a choice holds commas itself ("1,024,4,096"
    -> "1,024", "4,096"): the split that reads every item as a choice, else the plain split (the bad item is
    then reported)."""
    parts = [x for x in text.split(",")]
    known = set(names)

    def read(i):  # the items of parts[i:], each a choice, or None
        if i == len(parts):
            return []
        for j in range(len(parts), i, -1):
            item = ",".join(parts[i:j])
            if item in known:
                rest = read(j)
                if rest is not None:
                    return [item] + rest
        return None

    return read(0) if any("," in n for n in names) and read(0) is not None else [x for x in parts if x.strip()]


def _decode_number(comp, text: str):
    try:
        v = float(text)
    except ValueError:
        raise ValueError("not a number.") from None
    if not math.isfinite(v):
        raise ValueError("not a finite number.")
    lo, hi = getattr(comp, "minimum", None), getattr(comp, "maximum", None)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"outside the range {_num(lo)} to {_num(hi)}.")
    whole = getattr(comp, "precision", None) == 0 or (isinstance(comp, gr.Slider) and float(comp.step).is_integer()
                                                       and float(lo or 0).is_integer())
    if whole:
        if not v.is_integer():
            raise ValueError("expected a whole number.")
        return int(v)
    return v


def _num(v) -> str:
    return "…" if v is None else f"{v:g}"


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "…")


# ---- a whole link ------------------------------------------------------------------------------------------------
def query_string(tab_id: str, fields: dict, defaults: dict, values: dict, lecture: bool = False) -> tuple[str, list]:
    """"tab=sampling&temperature=10&top_k=2" with only the fields that differ from the start-up values.
    Returns (query string, notes about values left out)."""
    pairs, notes = [("tab", tab_id)], []
    for key, comp in fields.items():
        if key not in values:
            continue
        text = encode_value(values[key])
        if text == encode_value(defaults[key]):
            continue
        if field_kind(comp) == "text" and len(text) > MAX_LINK_TEXT:
            notes.append(f"{key} ({len(text):,} characters) is too long for a link and was left out.")
            continue
        pairs.append((key, text))
    if lecture:
        pairs.append(("lecture", "1"))
    return urlencode(pairs, quote_via=quote, safe=","), notes


def parse(tabs: dict, params) -> tuple[str | None, dict, list, bool | None]:
    """Read a link's query parameters against the registered tabs ({id: TabShare}) -> (tab id or None,
    {key: value}, notes, lecture on/off or None).

    Unknown tabs, unknown keys and values that do not fit a field are ignored, each with one sentence in `notes`;
    nothing here raises."""
    params = {str(k): str(v) for k, v in dict(params or {}).items()}
    notes: list = []
    lecture = None
    if "lecture" in params:
        flag = params["lecture"].strip().lower()
        if flag in TRUE | FALSE:
            lecture = flag in TRUE
        else:
            notes.append(f"Ignored lecture={params['lecture']!r}: use lecture=1 or lecture=0.")
    keys = [k for k in params if k not in GLOBAL_KEYS and not k.startswith("__")
            and not (k == "view" and params[k].strip().lower() in GRADIO_VIEWS)]
    tab_id = params.get("tab")
    if tab_id is None:
        if keys:
            notes.append(f"Ignored {', '.join(keys)}: the link does not say which tab they are for (add"
                         " tab=..., e.g. tab=sampling).")
        return None, {}, notes, lecture
    if tab_id not in tabs:
        known = ", ".join(tabs) or "none"
        notes.append(f"Ignored tab={tab_id!r}: there is no such tab (tabs: {known}); its settings were not"
                     " applied.")
        return None, {}, notes, lecture
    t = tabs[tab_id]
    values = {}
    for key in keys:
        if key == SECTION and key not in t.fields:  # a part of the tab to open and scroll to (register(sections=))
            names = list(getattr(t, "sections", None) or {})
            if params[key] in names:
                values[key] = params[key]
            else:
                where = f"its sections are {', '.join(names)}" if names else "it has no sections to open"
                notes.append(f"Ignored {key}={_short(params[key])}: the {t.label} tab has no section called"
                             f" {params[key]!r} ({where}).")
            continue
        comp = t.fields.get(key)
        if comp is None:
            notes.append(f"Ignored {key}={_short(params[key])}: the {t.label} tab has no setting called {key!r}.")
            continue
        try:
            values[key] = decode_value(comp, params[key])
        except ValueError as e:
            notes.append(f"Ignored {key}={_short(params[key])}: {e}")
    return tab_id, values, notes, lecture


def settings_query(tab_id: str, settings: dict) -> str:
    """A link's query string for a course-map preset (no components needed)."""
    return urlencode([("tab", tab_id)] + [(k, encode_value(v)) for k, v in settings.items()], quote_via=quote,
                     safe=",")


def note_markdown(notes: list) -> str:
    return "**Parts of this link were ignored.** " + " ".join(html.escape(n) for n in notes)
