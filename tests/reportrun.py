"""A small stored run for the report tests: a timing case (exchanges with tr, one token executed),
an electrical levels case through the virtual bench's scope (a stored capture), and a baud-error
sweep that stops at its failure threshold and fails the amount the plan requires (a failed
measurement with limits). About 5 s on the embedded default."""
import html.parser
from pathlib import Path

from conftest import QUICK, run_rig

PLAN = '\nname = "report-demo"' + QUICK + '''
[[bench]]
name = "meter"
kind = "embedded"
role = "meter-dut"
interface = "optical"

[[case]]
use = "meter/6.7/timing"
params = { reads = 3 }

[[case]]
use = "electrical/levels"
name = "levels/current-loop"
params = { interface = "current-loop" }

[[case]]
use = "electrical/margin"
name = "margin/baud-error"
params = { quantity = "baud_error", exchanges = 1, repeats = 0, must_work_at = 7.0 }
sweep = { amount = { start = 0.0, stop = 8.0, step = 2.0 } }
stop = { below = { measurement = "success_rate", value = 1.0 } }
'''


rig = run_rig   # the rig command, as a user runs it


def write_plan(directory: Path) -> Path:
    path = Path(directory) / "report-demo.toml"
    path.write_text(PLAN)
    return path


def run_in_process(directory: Path) -> tuple[Path, int]:
    """The plan run into a new store in `directory`, in this process; (store path, run id)."""
    from rig.campaign.plan import load_plan
    from rig.campaign.runner import Runner, start_run
    from rig.campaign.store import Store
    plan = load_plan(write_plan(directory))
    path = Path(directory) / "report.sqlite"
    with Store(path) as store:
        run_id = start_run(plan, store)
        Runner(plan, store, run_id).run()
    return path, run_id


class Page(html.parser.HTMLParser):
    """The parts of a report a user looks at: elements by id, images, tables as rows of cell text,
    links and sources."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.ids: dict[str, str] = {}            # id -> tag
        self.imgs: list[dict] = []               # attributes + "section": the enclosing section id
        self.urls: list[str] = []                # every src and href
        self.tags: list[str] = []
        self.tables: dict[str, list] = {}        # table id or class -> [(row classes, [cell text])]
        self._sections: list[str | None] = []
        self._table: list | None = None
        self._row = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids[a["id"]] = tag
        for k in ("src", "href"):
            if k in a:
                self.urls.append(a[k])
        if tag == "section":
            self._sections.append(a.get("id"))
        elif tag == "img":
            self.imgs.append({**a, "section": next((s for s in reversed(self._sections) if s), None)})
        elif tag == "table":
            self._table = self.tables.setdefault(a.get("id") or a.get("class") or "table", [])
        elif tag == "tr" and self._table is not None:
            self._row = (set((a.get("class") or "").split()), [])
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "section" and self._sections:
            self._sections.pop()
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row[1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
