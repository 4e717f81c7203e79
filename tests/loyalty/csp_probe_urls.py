"""The site's URLs plus one page that breaks the Content-Security-Policy in every way a template
could: the browser tests use it to show that their check fails on a violation."""

from django.http import HttpResponse
from django.urls import path

from config.urls import urlpatterns as site_urlpatterns

PROBE = """<!DOCTYPE html>
<html lang="en">
<head><title>CSP probe</title><style>p.probe { color: rgb(255, 0, 0); }</style></head>
<body>
<p class="probe-attr" style="color: rgb(0, 0, 255)">styled by an attribute</p>
<p class="probe">styled by a style block</p>
<button type="button" onclick="window.handlerRan = true">inline handler</button>
<a href="javascript:window.linkRan = true">javascript: link</a>
<script>window.inlineRan = true;</script>
</body>
</html>
"""


def probe(request):
    return HttpResponse(PROBE)


urlpatterns = [path("csp-probe/", probe), *site_urlpatterns]
