from django.contrib import admin
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import hostile, oidc, views

# Before the includes below, whose patterns use it.
register_converter(hostile.IdConverter, "id")

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz/", views.healthz, name="healthz"),
    path("accounts/login/", oidc.PasswordLoginView.as_view(), name="login"),
    path("accounts/logout/", oidc.LogoutView.as_view(), name="logout"),
    path("oidc/login/", oidc.LoginView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", oidc.CallbackView.as_view(), name="oidc_authentication_callback"),
    path("oidc/logout/", oidc.LogoutView.as_view(), name="oidc_logout"),
    path("admin/", admin.site.urls),
    path("", include("approvals.inbox.urls")),
    path("audit/", include("audit.screens.urls")),
    path("posture/", include("audit.screens.posture_urls")),
    path("agents/", include("agents.screens.urls")),
    path("security/", include("agents.screens.urls_security")),
    path("api/v1/", include("approvals.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view loads its init script from a URL and the template its styles from a
    # file, so the page needs no inline script or style under the CSP.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="approvals/api_docs.html"
        ),
        name="api-docs",
    ),
]
