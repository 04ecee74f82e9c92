"""The course map's buttons: each opens its tab filled with a preset, once that tab (and every option the preset
sets) is registered; otherwise it is greyed out with a note saying what it waits for."""
from __future__ import annotations


def course_available(reg, tab_id: str, settings: dict) -> bool:
    """Is `tab_id` registered with a field for every key of `settings`?"""
    t = reg.tabs.get(tab_id)
    return t is not None and set(settings) <= set(t.fields)


def wire(reg, outputs: list, refresh: dict) -> None:
    """Every course-map button of the registry (reg.course): enabled and wired, or greyed out with a note."""
    for button, note, tab_id, settings, needs in reg.course:
        if course_available(reg, tab_id, settings):
            button.interactive = True
            button.value = f"Open {reg.tabs[tab_id].label} ▸"

            def apply(tab_id=tab_id, settings=settings):
                return reg.updates(tab_id, settings, [], None)

            button.click(apply, None, outputs, queue=False, api_visibility="private").then(**refresh)
        else:
            button.interactive = False
            button.value = "Not in this app yet"
            note.value = f"*Arrives with {needs or 'the ' + tab_id + ' tab'}.*"
