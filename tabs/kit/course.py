"""The course map's buttons: each opens its tab filled with a preset, once that tab (and every option the preset
sets) is registered; otherwise it is greyed out with a note saying what it waits for."""
from __future__ import annotations

from .links import SECTION, scroll_js


def course_available(reg, tab_id: str, settings: dict) -> bool:
    """Is `tab_id` registered with a field for every key of `settings` (and the section it opens, if any)?"""
    t = reg.tabs.get(tab_id)
    if t is None:
        return False
    keys = set(settings)
    if SECTION in keys and SECTION not in t.fields:
        if settings[SECTION] not in t.sections:
            return False
        keys.discard(SECTION)
    return keys <= set(t.fields)


def wire(reg, outputs: list, refresh: dict) -> None:
    """Every course-map button of the registry (reg.course): enabled and wired, or greyed out with a note."""
    for button, note, tab_id, settings, needs in reg.course:
        if course_available(reg, tab_id, settings):
            button.interactive = True
            button.value = f"Open {reg.tabs[tab_id].label} ▸"

            def apply(tab_id=tab_id, settings=settings):
                return reg.updates(tab_id, settings, [], None)

            clicked = button.click(apply, None, outputs, queue=False, api_visibility="private")
            clicked.then(**refresh)
            target = reg.tabs[tab_id].sections.get(settings.get(SECTION))
            if target is not None:  # open AND show the answering section: scroll to it
                clicked.then(None, js=scroll_js(target.elem_id), queue=False, api_visibility="private")
        else:
            button.interactive = False
            button.value = "Not in this app yet"
            note.value = f"*Arrives with {needs or 'the ' + tab_id + ' tab'}.*"
