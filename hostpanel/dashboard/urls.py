"""Routes of the dashboard: /login/, /logout/, /t/<tenant>/..., /staff/... (included at the root)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from hostpanel.dashboard.views import (
    apps,
    audit,
    builds,
    containers,
    deploy,
    docker,
    edit,
    home,
    host_enrollment,
    images,
    networks,
    stacks,
    staff,
    usage,
)

app_name = "dashboard"

# below /t/<tenant slug>/
tenant_patterns = [
    path("", home.tenant_root, name="tenant"),
    path("apps/", apps.app_list, name="apps"),
    path("apps/<slug:name>/", apps.app_detail, name="app"),
    path("apps/<slug:name>/progress/", deploy.deploy_progress, name="progress"),
    path("apps/<slug:name>/edit/", edit.app_edit, name="edit"),
    path("apps/<slug:name>/<str:action>/", apps.app_action, name="app-action"),
    path("containers/<int:replica_id>/", containers.container_detail, name="container"),
    path("containers/<int:replica_id>/live/", containers.container_live, name="container-live"),
    path("containers/<int:replica_id>/<str:action>/", containers.container_action, name="container-action"),
    path("deploy/", deploy.deploy_form, name="deploy"),
    # compose stacks (issue 14, stacks)
    path("stacks/", stacks.stack_list, name="stacks"),
    path("stacks/<slug:name>/", stacks.stack_detail, name="stack"),
    path("stacks/<slug:name>/<str:action>/", stacks.stack_action, name="stack-action"),
    path("usage/", usage.usage_page, name="usage"),
    path("usage/live/", usage.usage_live, name="usage-live"),
    path("images/", images.image_list, name="images"),
    path("images/upload/", images.image_upload, name="image-upload"),
    path("images/<int:image_id>/status/", images.image_status, name="image-status"),
    path("networks/", networks.network_list, name="networks"),
    path("networks/create/", networks.network_create, name="network-create"),
    path("networks/<slug:name>/", networks.network_detail, name="network"),
    path("networks/<slug:name>/delete/", networks.network_delete, name="network-delete"),
    path("builds/", builds.build_list, name="builds"),
    path("builds/<int:build_id>/", builds.build_detail, name="build"),
    path("audit/", audit.tenant_audit, name="audit"),
    path("docker/", docker.docker_page, name="docker"),
    path("docker/issue/", docker.docker_issue, name="docker-issue"),
    path("docker/<int:certificate_id>/revoke/", docker.docker_revoke, name="docker-revoke"),
]

urlpatterns = [
    path("", home.home, name="home"),
    # pages without our <link rel="icon"> (API docs, Django admin): browsers ask for this path
    path("favicon.ico", RedirectView.as_view(url=static("img/favicon.svg"), permanent=True), name="favicon"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("t/<slug:slug>/", include(tenant_patterns)),
    path("staff/", staff.overview, name="staff"),
    path("staff/tenants/<slug:slug>/quota/", staff.quota_update, name="quota"),
    path("staff/audit/", audit.staff_audit, name="staff-audit"),
    path("staff/hosts/add/", host_enrollment.host_add, name="host-add"),  # enrollment (issue 15)
    path("staff/hosts/<slug:name>/revoke/", host_enrollment.host_revoke, name="host-revoke"),
]
