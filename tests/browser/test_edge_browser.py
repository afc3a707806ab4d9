"""A browser opens an app by its hostname: http://<app>-<tenant>.localhost:<proxy port>/ (chromium)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.browser.live import LiveStack

PAGE = "<title>edge page</title><h1 id=hello>hello from the edge</h1>"
HTTPD = ["sh", "-c", f"mkdir -p /www && echo '{PAGE}' > /www/index.html && exec httpd -f -p 8080 -h /www"]


def test_the_app_opens_at_its_localhost_name_in_a_browser(live_stack: LiveStack, page: Any) -> None:
    owner = live_stack.user("edge-owner")
    live_stack.tenant("edgeco", owner)
    live_stack.app("edgeco", "www", command=HTTPD, http_port=8080)
    url = live_stack.app_url("edgeco", "www")

    def loads() -> bool:
        try:
            response = page.goto(url)
        except Exception:  # refused or 503 while the route is on its way
            return False
        return response is not None and response.status == 200

    live_stack.wait_for(loads, 60, f"{url} through the proxy\n{live_stack.agent.log_tail()}")
    assert page.locator("#hello").inner_text() == "hello from the edge"
    assert page.title() == "edge page"
    # Another name under the same proxy is nobody's: an empty 503, so chromium shows its own error
    # page (tests/hostpanel/e2e/test_e2e_edge.py checks the answers to hostile names in detail).
    with pytest.raises(PlaywrightError, match="ERR_HTTP_RESPONSE_CODE_FAILURE"):
        page.goto(live_stack.app_url("edgeco", "nothing"))
