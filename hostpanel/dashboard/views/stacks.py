"""Stacks: the tenant's stacks and the "new stack" form (paste, upload or git); one stack's page with
every service's state (live while it deploys), links to each service's app (and its logs), redeploy
and down."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from hostpanel.dashboard.access import TenantContext, page, require_developer, tenant_context
from hostpanel.dashboard.status import app_status
from hostpanel.errors import Forbidden, NotFound, ServiceError
from hostpanel.stacks import services, sources
from hostpanel.stacks.forms import StackForm, StackSourceForm, parse_env
from hostpanel.stacks.models import Stack


def tenant_stack(ctx: TenantContext, name: str) -> Stack:
    """A stack of the page's tenant (another tenant's: 404)."""
    stack = services.visible_stacks(ctx.actor, ctx.tenant).filter(name=name).first()
    if stack is None:
        raise Http404(f"no stack {name!r} in tenant {ctx.tenant.slug!r}")
    return stack


@page
def stack_list(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the stacks and (developers) the form; POST: deploy a stack and go to its page."""
    ctx = tenant_context(request, slug)
    form: StackForm | None = StackForm() if ctx.can_act else None
    error = ""
    if request.method == "POST":
        require_developer(ctx)
        form = StackForm(request.POST, request.FILES)
        if form.is_valid():
            source = None
            try:
                source = form.source(ctx.tenant)
                if source is None:
                    raise ServiceError("give the compose file: paste it, upload it or name a git repository")
                stack = services.create_stack(
                    ctx.actor, ctx.tenant, form.cleaned_data["name"], source, form.env_values()
                )
            except (NotFound, Forbidden):
                raise
            except ServiceError as exc:
                error = exc.message
                if source is not None:
                    sources.forget_project_dir(ctx.tenant, source.project_dir)
            else:
                messages.success(request, f"Stack {stack.name} is being deployed.")
                return redirect("dashboard:stack", slug=slug, name=stack.name)
    context = ctx.template_context() | {
        "stacks": services.visible_stacks(ctx.actor, ctx.tenant),
        "form": form,
        "error": error,
        "section": "stacks",
    }
    failed = bool(error) or (form is not None and form.is_bound and bool(form.errors))
    return render(request, "stacks/stacks.html", context, status=400 if failed else 200)


@page
def stack_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """One stack: its services, their apps' state and containers (htmx polls the services part)."""
    ctx = tenant_context(request, slug)
    stack = tenant_stack(ctx, name)
    env_text = "\n".join(f"{k}={v}" for k, v in stack.env.items())
    rows = [
        (service, app_status(service.app, service.app.replicas.all()) if service.app is not None else None)
        for service in stack.services.select_related("app__current_release").prefetch_related("app__replicas")
    ]
    context = ctx.template_context() | {
        "stack": stack,
        "rows": rows,
        "form": StackSourceForm(initial=_redeploy_initial(stack, env_text)) if ctx.can_act else None,
        "section": "stacks",
    }
    if request.headers.get("HX-Request"):
        return render(request, "stacks/_services.html", context)
    return render(request, "stacks/stack.html", context)


def _redeploy_initial(stack: Stack, env_text: str) -> dict[str, str]:
    """The redeploy form as the stack was deployed: its pasted file, or its git source (an uploaded
    project is redeployed from what was uploaded unless a new one is given)."""
    if stack.source_kind == Stack.Source.PASTE:
        return {"compose": stack.source, "env": env_text}
    if stack.source_kind == Stack.Source.GIT:
        return {"git_url": stack.git_url, "git_file": stack.git_file, "env": env_text}
    return {"env": env_text}


@page
def stack_action(request: HttpRequest, slug: str, name: str, action: str) -> HttpResponse:
    """POST redeploy (a new file and/or variables) or down (``volumes`` to delete its volumes too)."""
    if request.method != "POST" or action not in ("redeploy", "down"):
        raise Http404("no such action")
    ctx = tenant_context(request, slug)
    require_developer(ctx)
    stack = tenant_stack(ctx, name)
    try:
        if action == "down":
            services.down_stack(ctx.actor, stack, volumes=request.POST.get("volumes") == "on")
            messages.success(request, f"Stack {name} is down.")
            return redirect("dashboard:stacks", slug=slug)
        form = StackSourceForm(request.POST, request.FILES)
        if not form.is_valid():
            raise ServiceError("; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        source = form.source(ctx.tenant)
        services.redeploy_stack(ctx.actor, stack, source, parse_env(form.cleaned_data.get("env", "")))
        messages.success(request, f"Stack {name} is being redeployed: only changed services roll.")
    except (NotFound, Forbidden):
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("dashboard:stack", slug=slug, name=name)
