"""Pages of the traces app: the runs list, one run, projects and their keys, model prices."""

import json
from collections import defaultdict
from decimal import Decimal

from django.contrib import messages
from django.db.models import Count, F, Prefetch
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cockpit.roles import ADMIN, VIEWER, role_required
from traces.forms import (
    SINCE_CHOICES,
    STATUS_CHOICES,
    KeyForm,
    ModelPriceForm,
    ProjectForm,
    RunFilterForm,
    agent_names,
    encode_cursor,
)
from traces.models import IngestKey, ModelPrice, Project, Run, Span, UnpricedModel

RUNS_PER_PAGE = 50
# The run page lists at most this many spans; the full trace viewer handles bigger traces.
SPANS_ON_RUN_PAGE = 500


def format_duration(ms: float | None) -> str:
    """A duration for people: 850 ms, 2.35 s, 41.2 s, 3m 05s."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 10_000:
        return f"{ms / 1000:.2f} s"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes}m {seconds:02d}s"


# --- Runs ---------------------------------------------------------------------------------


@require_GET
@role_required(VIEWER)
def run_list(request):
    form = RunFilterForm(request.GET)
    runs = form.filter(Run.objects.select_related("agent", "project")).order_by(
        "-started_at", "-id"
    )
    page = list(runs[: RUNS_PER_PAGE + 1])
    older_query = None
    if len(page) > RUNS_PER_PAGE:
        page = page[:RUNS_PER_PAGE]
        query = request.GET.copy()
        query["before"] = encode_cursor(page[-1])
        older_query = query.urlencode()
    newest_query = request.GET.copy()
    newest_query.pop("before", None)
    for run in page:
        run.duration_display = format_duration(run.duration_ms)
    names = agent_names()
    chosen_agent = form.cleaned_data.get("agent") or ""
    if chosen_agent and chosen_agent not in names:
        names.append(chosen_agent)
    return render(
        request,
        "traces/run_list.html",
        {
            "form": form,
            "runs": page,
            "agent_names": names,
            "chosen": form.cleaned_data,
            "status_choices": STATUS_CHOICES,
            "since_choices": SINCE_CHOICES,
            "older_query": older_query,
            "newest_query": newest_query.urlencode(),
        },
    )


def _get_run(request, trace_id: str) -> tuple[Run, list[Run]]:
    """The run with this trace id: the newest one, or the one of ?project=<name>.

    Trace ids are chosen by agents, so two projects may hold the same one; the others are
    returned so the page can point at them.
    """
    candidates = list(
        Run.objects.filter(trace_id=trace_id)
        .select_related("agent", "project")
        .order_by("-started_at", "-id")
    )
    wanted = request.GET.get("project")
    matching = [run for run in candidates if not wanted or run.project.name == wanted]
    if not matching:
        raise Http404("No run has this trace id.")
    run = matching[0]
    return run, [other for other in candidates if other.pk != run.pk]


def tree_order(spans: list[Span]) -> list[tuple[Span, int]]:
    """Spans depth first under their parents, each with its depth; siblings in start order.

    A span whose parent is missing (not arrived yet, or cut off) is shown as a root. Parent
    ids come from agents, so cycles are possible: every span is visited exactly once.
    """
    by_id = {span.span_id: span for span in spans}
    children = defaultdict(list)
    roots = []
    for span in spans:
        if span.parent_span_id and span.parent_span_id in by_id:
            children[span.parent_span_id].append(span)
        else:
            roots.append(span)
    ordered: list[tuple[Span, int]] = []
    seen: set[int] = set()

    def walk(start: Span) -> None:
        stack = [(start, 0)]
        while stack:
            span, depth = stack.pop()
            if span.pk in seen:
                continue
            seen.add(span.pk)
            ordered.append((span, depth))
            stack.extend((child, depth + 1) for child in reversed(children[span.span_id]))

    for root in roots:
        walk(root)
    for span in spans:  # Only spans caught in a parent cycle are left.
        walk(span)
    return ordered


def _readable(text: str, fmt: str) -> str:
    """Content as a person reads it: JSON indented, anything else as it came."""
    if fmt in {"messages", "json"}:
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            return text
    return text


@require_GET
@role_required(VIEWER)
def run_detail(request, trace_id):
    run, others = _get_run(request, trace_id)
    spans = list(run.spans.order_by("started_at", "id")[:SPANS_ON_RUN_PAGE])
    window_ms = max(
        [run.duration_ms]
        + [(s.ended_at - run.started_at).total_seconds() * 1000 for s in spans]
        + [1.0]
    )
    rows = []
    for span, depth in tree_order(spans):
        offset_ms = max((span.started_at - run.started_at).total_seconds() * 1000, 0)
        span.depth = depth
        span.duration_display = format_duration(span.duration_ms)
        span.bar_start = round(100 * offset_ms / window_ms, 2)
        span.bar_width = max(round(100 * span.duration_ms / window_ms, 2), 0.5)
        span.input_chars = len(span.input)
        span.output_chars = len(span.output)
        span.input_display = _readable(span.input, span.input_format)
        span.output_display = _readable(span.output, span.output_format)
        rows.append(span)
    run.duration_display = format_duration(run.duration_ms)
    return render(
        request,
        "traces/run_detail.html",
        {
            "run": run,
            "spans": rows,
            "spans_cut": run.span_count > len(spans) and len(spans) == SPANS_ON_RUN_PAGE,
            "others": others,
        },
    )


# --- Projects and keys --------------------------------------------------------------------


def _projects_page(request, *, project_form=None, key_form_for=None, status=200):
    projects = Project.objects.annotate(agent_count=Count("agents")).prefetch_related(
        Prefetch(
            "keys",
            # Active keys first, newest first within each group.
            queryset=IngestKey.objects.select_related("created_by").order_by(
                F("revoked_at").desc(nulls_first=True), "-created_at"
            ),
        )
    )
    return render(
        request,
        "traces/project_list.html",
        {
            "projects": projects,
            "project_form": project_form or ProjectForm(),
            "key_form_for": key_form_for or (None, None),
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def project_list(request):
    if request.method == "GET":
        return _projects_page(request)
    form = ProjectForm(request.POST)
    if not form.is_valid():
        return _projects_page(request, project_form=form, status=400)
    project = form.save()
    messages.success(request, f"Project {project.name} created. Create a key for its agents.")
    return redirect(f"{reverse('project-list')}#project-{project.name}")


@never_cache  # The response carries a secret: no cache may keep it.
@require_POST
@role_required(ADMIN)
def key_create(request, name):
    project = get_object_or_404(Project, name=name)
    form = KeyForm(request.POST)
    if not form.is_valid():
        return _projects_page(request, key_form_for=(project.pk, form), status=400)
    key, plaintext = IngestKey.issue(project, label=form.cleaned_data["label"], user=request.user)
    return render(
        request,
        "traces/key_created.html",
        {
            "project": project,
            "key": key,
            "plaintext": plaintext,
            "otlp_endpoint": request.build_absolute_uri("/").rstrip("/"),
        },
    )


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def key_revoke(request, pk):
    key = get_object_or_404(IngestKey.objects.select_related("project"), pk=pk)
    if request.method == "GET":
        return render(request, "traces/key_revoke.html", {"key": key})
    if key.is_active:
        key.revoke()
        messages.success(
            request, f"Key {key.prefix}… of {key.project} revoked. Agents using it now get 401."
        )
    else:
        messages.info(request, f"Key {key.prefix}… was already revoked.")
    return redirect(f"{reverse('project-list')}#project-{key.project.name}")


# --- Prices -------------------------------------------------------------------------------


def format_rate(value: Decimal | None) -> str | None:
    """A price per million tokens without trailing zeros: 3, 0.10, 0.075."""
    if value is None:
        return None
    text = f"{value.normalize():f}"
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}" if cents else whole


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def price_list(request):
    status = 200
    if request.method == "POST":
        form = ModelPriceForm(request.POST)
        if form.is_valid():
            price = form.save()
            messages.success(
                request,
                f"Price for {price.model} ({price.provider or 'any provider'}) added to "
                f"{price.project}; "
                f"{form.repriced_spans} stored span{'s' if form.repriced_spans != 1 else ''} "
                "repriced.",
            )
            return redirect("price-list")
        status = 400
    else:
        # "Add a price" on an unpriced model links here with the form filled in.
        form = ModelPriceForm(
            initial={
                key: request.GET[key]
                for key in ("project", "provider", "model")
                if key in request.GET
            }
        )
    prices = list(
        ModelPrice.objects.select_related("project").order_by("project__name", "model", "provider")
    )
    for price in prices:
        price.rates = [
            format_rate(rate)
            for rate in (
                price.input_per_mtok,
                price.output_per_mtok,
                price.cache_read_per_mtok,
                price.cache_write_per_mtok,
            )
        ]
    return render(
        request,
        "traces/price_list.html",
        {
            "form": form,
            "unpriced": UnpricedModel.objects.select_related("project"),
            "prices": prices,
            "has_projects": Project.objects.exists(),
        },
        status=status,
    )
