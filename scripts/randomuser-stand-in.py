#!/usr/bin/env python3
"""A local stand-in for https://randomuser.me/api/ for offline machines.

  scripts/randomuser-stand-in.py [PORT]     (default 8099; serves GET /api/?results=N)

Answers with the real API's shape (results + info), including what trips pipelines up:
non-ASCII names and numeric postcodes for some nationalities, text postcodes for others.
"""
import json
import random
import sys
import unicodedata
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PEOPLE = [
    # (nat, gender, title, first, last, city, state, country, postcode, street)
    ("US", "female", "Miss", "Jennie", "Nichols", "Billings", "Michigan", "United States", 63104, "Valwood Pkwy"),
    ("DE", "male", "Mr", "Jürgen", "Müller", "Görlitz", "Sachsen", "Germany", 2826, "Schloßstraße"),
    ("TR", "female", "Ms", "Zoë", "Ünal", "İzmir", "Kırşehir", "Turkey", 35210, "Atatürk Sk"),
    ("GB", "male", "Mr", "Seán", "O'Brien", "Wells", "Somerset", "United Kingdom", "BA5 2PJ", "High Street"),
    ("CA", "female", "Mrs", "Chloé", "Tremblay", "Québec", "Québec", "Canada", "G1R 4S9", "Rue Saint-Jean"),
    ("NO", "male", "Mr", "Øyvind", "Ødegård", "Tromsø", "Troms", "Norway", "9008", "Storgata"),
    ("FR", "female", "Mme", "Maëlle", "Lefèvre", "Besançon", "Doubs", "France", 25000, "Rue de la Préfecture"),
    ("ES", "male", "Mr", "José", "Núñez", "Cádiz", "Andalucía", "Spain", 11001, "Calle Ancha"),
    ("BR", "female", "Ms", "Lívia", "Conceição", "São Paulo", "São Paulo", "Brazil", 1310100, "Rua Augusta"),
    ("IN", "male", "Mr", "Aarav", "Iyer", "Chennai", "Tamil Nadu", "India", 600001, "Anna Salai"),
]


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def person(rng):
    nat, gender, title, first, last, city, state, country, postcode, street = rng.choice(PEOPLE)
    born = datetime(1950, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(50 * 365 * 86400))
    registered = datetime(2005, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(18 * 365 * 86400))
    ascii_first = unicodedata.normalize("NFKD", first).encode("ascii", "ignore").decode().lower()
    username = f"{ascii_first}{rng.randrange(100, 999)}"
    portrait = "women" if gender == "female" else "men"
    number = rng.randrange(1, 99)
    return {
        "gender": gender,
        "name": {"title": title, "first": first, "last": last},
        "location": {
            "street": {"number": rng.randrange(1, 9999), "name": street},
            "city": city,
            "state": state,
            "country": country,
            "postcode": postcode,
            "coordinates": {"latitude": f"{rng.uniform(-90, 90):.4f}", "longitude": f"{rng.uniform(-180, 180):.4f}"},
            "timezone": {"offset": "+1:00", "description": "Brussels, Copenhagen, Madrid, Paris"},
        },
        "email": f"{username}@example.com",
        "login": {
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "username": username,
            "password": "hunter2",
            "salt": "sld1yGtd",
            "md5": "ab54ac4c0be9480ae8fa5e9e2a5196a3",
            "sha1": "edcf2ce613cbdea349133c52dc2f3b83168dc51b",
            "sha256": "48df5229235ada28389b91e60a935e4f9b73eb4bdb855ef9258a1751f10bdc5d",
        },
        "dob": {"date": iso(born), "age": 2026 - born.year},
        "registered": {"date": iso(registered), "age": 2026 - registered.year},
        "phone": f"0{rng.randrange(10, 99)}-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}",
        "cell": f"0{rng.randrange(10, 99)}-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}",
        "id": {"name": "ID", "value": str(rng.randrange(10**8, 10**9))},
        "picture": {
            "large": f"https://randomuser.me/api/portraits/{portrait}/{number}.jpg",
            "medium": f"https://randomuser.me/api/portraits/med/{portrait}/{number}.jpg",
            "thumbnail": f"https://randomuser.me/api/portraits/thumb/{portrait}/{number}.jpg",
        },
        "nat": nat,
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path.rstrip("/") != "/api":
            self.send_error(404, "only /api/ is served")
            return
        query = parse_qs(url.query)
        try:
            count = max(1, min(5000, int(query.get("results", ["1"])[0])))
        except ValueError:
            count = 1
        seed = query.get("seed", [uuid.uuid4().hex[:16]])[0]
        rng = random.Random(seed)
        body = json.dumps({
            "results": [person(rng) for _ in range(count)],
            "info": {"seed": seed, "results": count, "page": 1, "version": "1.4"},
        }, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("randomuser-stand-in: " + fmt % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8099
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"randomuser stand-in on http://127.0.0.1:{port}/api/", flush=True)
    server.serve_forever()
