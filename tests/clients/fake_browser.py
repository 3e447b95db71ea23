"""A browser for sign-in tests: `BROWSER="python fake_browser.py %s"`. Opening a URL
returns at once (as a real browser does) while a background process plays the
person: it loads the sign-in page, fills in KEYLESS_BROWSER_USER and
KEYLESS_BROWSER_PASSWORD, posts the form and follows the redirect to the
application's loopback address. What it saw goes to KEYLESS_BROWSER_LOG."""

import json
import os
import re
import subprocess
import sys
from html import unescape
from urllib.parse import urljoin

import requests


def play(url):
    log = {"url": url}
    page = requests.get(url, verify=os.environ["REQUESTS_CA_BUNDLE"], timeout=30, allow_redirects=False)
    log["page_status"] = page.status_code
    fields = {unescape(name): unescape(value)
              for name, value in re.findall(r'<input type=hidden name=(\w+) value="([^"]*)">', page.text)}
    if page.status_code == 200 and fields:
        fields["username"] = os.environ["KEYLESS_BROWSER_USER"]
        fields["password"] = os.environ["KEYLESS_BROWSER_PASSWORD"]
        posted = requests.post(url.split("?")[0], data=fields, verify=os.environ["REQUESTS_CA_BUNDLE"], timeout=30,
                               allow_redirects=False)
        log["post_status"] = posted.status_code
        target = posted.headers.get("location")
        if posted.status_code == 200 and "<form method=post action=" in posted.text:
            # response_mode=form_post: the page posts the answer to the application.
            action = unescape(re.search(r'<form method=post action="([^"]*)"', posted.text).group(1))
            answer = {unescape(n): unescape(v)
                      for n, v in re.findall(r'<input type=hidden name=(\w+) value="([^"]*)">', posted.text)}
            log["form_post"] = {"action": action, "fields": sorted(answer)}
            log["landing_status"] = requests.post(action, data=answer, timeout=30).status_code
        elif posted.status_code == 200:
            log["post_page"] = posted.text
    else:
        target = page.headers.get("location")
    log["redirect"] = target
    if target:
        log["landing_status"] = requests.get(urljoin(url, target), timeout=30).status_code
    with open(os.environ["KEYLESS_BROWSER_LOG"], "a") as out:
        out.write(json.dumps(log) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--play":
        play(sys.argv[2])
    else:
        subprocess.Popen([sys.executable, __file__, "--play", sys.argv[1]], start_new_session=True)
