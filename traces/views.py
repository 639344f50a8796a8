"""Pages of the traces app: the runs list, one run, projects and their keys, model prices."""

from decimal import Decimal

from django.contrib import messages
from django.db import OperationalError, connection, transaction
from django.db.models import Count, F, Prefetch
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from cockpit.roles import ADMIN, VIEWER, role_required
from traces.forms import (
    KeyForm,
    ModelPriceForm,
    ProjectForm,
    RunFilterForm,
    agent_names,
    encode_cursor,
)
from traces.models import IngestKey, ModelPrice, Project, Run, UnpricedModel

RUNS_PER_PAGE = 50
# A runs-list query taking longer is cancelled and the page says how to narrow the filters.
LIST_QUERY_TIMEOUT = "3s"
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cancelled by its timeout
# Filters under "More filters" on the runs list; the panel opens when one of them is set.
ADVANCED_FILTERS = (
    "version", "model", "user", "conversation", "task", "since", "until", "min_cost",
    "min_duration", "has_error", "has_pii",
)  # fmt: skip


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
    """The runs list: filters and sort in the URL, keyset pages, new runs live at the top.

    An htmx request gets only the part it swaps: the results (filter form, pager), or for the
    live element (#runs-live) just the rows newer than the newest one shown.
    """
    form = RunFilterForm(request.GET)
    runs = form.filter(Run.objects.select_related("agent", "project"))
    htmx = request.htmx and not request.htmx.history_restore_request
    live_refresh = htmx and request.htmx.trigger == "runs-live" and form.is_live
    if live_refresh and form.cleaned_data.get("after_position"):
        response = _new_rows(request, form, runs)
    elif htmx:
        response = render(
            request, "traces/_run_results.html", _results_context(request, form, runs)
        )
    else:
        context = _results_context(request, form, runs)
        names = agent_names()
        chosen_agent = form.cleaned_data.get("agent") or ""
        if chosen_agent and chosen_agent not in names:
            names.append(chosen_agent)
        context["agent_names"] = names
        context["advanced_text"] = ADVANCED_FILTERS[:-2]  # the two checkboxes go side by side
        response = render(request, "traces/run_list.html", context)
    # The same URL answers with the page or with a fragment: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


def _query_without(request, *names: str, **changes: str) -> str:
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    for name, value in changes.items():
        query[name] = value
    return query.urlencode()


def _decorate(runs: list[Run], *, live: bool) -> None:
    for run in runs:
        run.duration_display = format_duration(run.duration_ms)
        # The live element asks for runs newer than the first row's cursor (static/traces/runs.js).
        run.live_cursor = encode_cursor(run) if live else ""


def fetch_runs(runs, limit: int) -> list[Run] | None:
    """One page of runs, or None when the query ran past LIST_QUERY_TIMEOUT.

    On PostgreSQL the page is read without parallel workers: starting them costs more than
    reading the page's rows through an index (tens of ms on a busy machine). The timeout
    bounds what one filter combination can cost (a phrase search over common words).
    """
    if connection.vendor != "postgresql":
        return list(runs[:limit])
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SET LOCAL max_parallel_workers_per_gather = 0; "
                f"SET LOCAL statement_timeout = '{LIST_QUERY_TIMEOUT}'"
            )
            return list(runs[:limit])
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) != QUERY_CANCELED:
            raise
        return None


def _results_context(request, form: RunFilterForm, runs) -> dict:
    page = fetch_runs(runs, RUNS_PER_PAGE + 1)
    timed_out = page is None
    page = page or []
    next_query = None
    if len(page) > RUNS_PER_PAGE:
        page = page[:RUNS_PER_PAGE]
        next_query = _query_without(
            request, "after", cursor=encode_cursor(page[-1], form.cleaned_data["sort"])
        )
    _decorate(page, live=form.is_live)
    return {
        "form": form,
        "runs": page,
        "timed_out": timed_out,
        "live": form.is_live and not timed_out,
        "live_query": _query_without(request, "cursor", "after"),
        "next_query": next_query,
        "first_query": _query_without(request, "cursor", "after"),
        "advanced_open": any(
            form.cleaned_data.get(name) not in (None, "", False) or form[name].errors
            for name in ADVANCED_FILTERS
        ),
    }


def _new_rows(request, form: RunFilterForm, runs) -> HttpResponse:
    """The rows the live list lacks, for htmx to put on top; the whole first page if too many."""
    newer = fetch_runs(form.newer(runs), RUNS_PER_PAGE + 1) or []
    if len(newer) > RUNS_PER_PAGE:
        # More new runs than a page: a gap would open under them, so redraw the first page.
        response = render(
            request, "traces/_run_results.html", _results_context(request, form, runs)
        )
        return retarget(reswap(response, "outerHTML"), "#runs-results")
    _decorate(newer, live=True)
    return render(request, "traces/_run_rows.html", {"runs": newer, "fresh": True})


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
