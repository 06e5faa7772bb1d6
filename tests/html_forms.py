"""Read an HTML form as a browser would submit it, so admin tests post what the page
really shows (hidden values included) instead of a hand-written dictionary."""

from html.parser import HTMLParser

FormData = dict[str, list[str]]


class _FormReader(HTMLParser):
    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.data: FormData = {}
        self.select: str | None = None
        self.select_first: str | None = None
        self.select_chose = False
        self.option_value: str | None = None
        self.option_selected = False
        self.option_text = ""
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or "disabled" in a:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.data.setdefault(name, []).append(a.get("value", "on"))
            elif kind not in ("submit", "button", "file", "image", "reset"):
                self.data.setdefault(name, []).append(a.get("value", ""))
        elif tag == "select" and name:
            self.select, self.select_first, self.select_chose = name, None, False
            self.multiple = "multiple" in a
        elif tag == "option" and self.select is not None:
            self.option_value = a.get("value")
            self.option_selected = "selected" in a
            self.option_text = ""
        elif tag == "textarea" and name:
            self.textarea = name
            self.data.setdefault(name, []).append("")

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.data[self.textarea][-1] += data
        elif self.select is not None and self.option_value is None:
            self.option_text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "option" and self.select is not None:
            self._option_done()
        elif tag == "select" and self.select is not None:
            self._option_done()
            if not self.select_chose and not self.multiple and self.select_first is not None:
                self.data.setdefault(self.select, []).append(self.select_first)
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def _option_done(self) -> None:
        if self.select is None or (self.option_value is None and not self.option_text):
            return
        value = self.option_value if self.option_value is not None else self.option_text
        if self.select_first is None:
            self.select_first = value
        if self.option_selected:
            self.data.setdefault(self.select, []).append(value)
            self.select_chose = True
        self.option_value, self.option_selected, self.option_text = None, False, ""


def read_form(html: str, form_id: str) -> FormData:
    """The fields of the form with this id, as the browser would send them unchanged."""
    reader = _FormReader(form_id)
    reader.feed(html)
    return reader.data
