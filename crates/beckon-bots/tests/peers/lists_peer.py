"""The public lists beckon-bots is measured on, as JSON on stdout.

- Every instance of the crawler-user-agents list (the Python package of that name, whose version
  is printed with it).
- uap-core's test fixtures from the folder given as the first argument (`tests/` of uap-core):
  test_ua.yaml's user agents with their browser family, test_device.yaml's with their device
  family, brand and model.
"""

import json
import sys
from importlib.metadata import version
from pathlib import Path

import crawleruseragents
import yaml


def cases(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)["test_cases"]


def main():
    fixtures = Path(sys.argv[1])
    json.dump(
        {
            "crawler_user_agents": version("crawler-user-agents"),
            "crawlers": [
                i for c in crawleruseragents.CRAWLER_USER_AGENTS_DATA for i in c.get("instances", [])
            ],
            "browsers": [
                {"ua": c["user_agent_string"], "family": c["family"]}
                for c in cases(fixtures / "test_ua.yaml")
            ],
            "devices": [
                {"ua": c["user_agent_string"], "family": c["family"], "brand": c.get("brand"),
                 "model": c.get("model")}
                for c in cases(fixtures / "test_device.yaml")
            ],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
