#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the shared test vectors and fixtures beside the checkout
# (../shared, or $WXOA_SHARED). Idempotent: seed files are named after their source.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
shared="${WXOA_SHARED:-$here/../../shared}"
corpus="$here/corpus"
[ -d "$shared/vectors" ] && [ -d "$shared/fixtures/inbound" ] || {
    echo "no test vectors at $shared (set WXOA_SHARED)" >&2
    exit 1
}
mkdir -p "$corpus"/{inbound_xml,decrypt,envelope_decode,config_load}

# inbound_xml: every fixture, the XML of the vectors, and hand-written hostile shapes.
# decrypt: the Encrypt values and echostrs of the fixed key/appid (fuzz/src/lib.rs), and their
# plaintext buffers behind the RAW_PLAINTEXT marker byte '!'.
# config_load: the TOML blocks of docs/configuration.md and hand-written configs.
python3 - "$shared" "$corpus" "$here/.." <<'PY'
import json, os, re, sys
shared, corpus, repo = sys.argv[1:4]
KEY = "iouTTyPatiK27F4T3TgOLubYXrMxbyq0dvBPAG1XykI"  # fuzz/src/lib.rs ENCODING_AES_KEY
counts = {}

def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)
    counts[target] = counts.get(target, 0) + 1

def vectors(name):
    with open(os.path.join(shared, "vectors", name)) as f:
        return json.load(f)

inbound = os.path.join(shared, "fixtures", "inbound")
for name in sorted(os.listdir(inbound)):
    with open(os.path.join(inbound, name), "rb") as f:
        put("inbound_xml", "fixture_" + name, f.read())
for i, case in enumerate(vectors("inbound_parse.json")):
    if case.get("xml"):
        put("inbound_xml", f"inbound_parse_{i}.xml", case["xml"])
for i, case in enumerate(vectors("passive_reply.json")):
    put("inbound_xml", f"passive_reply_{i}.xml", case["expected_xml"])
for i, case in enumerate(vectors("decrypt.json")):
    if case.get("expected_plaintext") and case["post_body"] is not None:
        put("inbound_xml", f"decrypt_plain_{i}.xml", case["expected_plaintext"])
    if case["post_body"] is not None:
        put("inbound_xml", f"decrypt_body_{i}.xml", case["post_body"])
hostile = {
    "doctype": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><xml><A>&a;</A></xml>',
    "laughs": '<!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;">]><xml><ToUserName>&b;</ToUserName></xml>',
    "xxe": '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><A>&x;</A></xml>',
    "refs": "<xml><A>&lt;&gt;&amp;&apos;&quot;&#x41;&#66;&undeclared;</A></xml>",
    "cdata_split": "<xml><A><![CDATA[a]]]]><![CDATA[>b]]></A><B/></xml>",
    "deep": "<xml>" + "<a>" * 9 + "</a>" * 9 + "</xml>",
    "pi": '<?xml version="1.0"?><?php x?><xml/>',
    "unknown_event": "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
                     "<MsgType>event</MsgType><Event>a.b*&gt;</Event><X><Y>1</Y><Y>2</Y></X></xml>",
    "location_nan": "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
                    "<MsgType>location</MsgType><Location_X>NaN</Location_X><Location_Y>inf</Location_Y></xml>",
}
for name, xml in hostile.items():
    put("inbound_xml", f"hostile_{name}.xml", xml)

echo_re = re.compile(r"<Encrypt>\s*(?:<!\[CDATA\[)?([^<\]]+)")
for i, case in enumerate(vectors("decrypt.json")):
    if case["encoding_aes_key"] != KEY:
        continue
    if case["post_body"] is None:
        put("decrypt", f"decrypt_echostr_{i}", case["query"]["echostr"])
    else:
        m = echo_re.search(case["post_body"])
        if m:
            put("decrypt", f"decrypt_encrypt_{i}", m.group(1).strip())
for i, case in enumerate(vectors("encrypt.json")):
    if case["encoding_aes_key"] != KEY:
        continue
    put("decrypt", f"encrypt_ciphertext_{i}", case["ciphertext_base64"])
    padded = bytes.fromhex(case["pre_padding_hex"])
    padded += bytes([case["pad_byte"]]) * case["pad_byte"]
    put("decrypt", f"encrypt_plaintext_{i}", b"!" + padded)

with open(os.path.join(repo, "docs", "configuration.md")) as f:
    for i, block in enumerate(re.findall(r"```toml\n(.*?)```", f.read(), re.S)):
        put("config_load", f"configuration_md_{i}.toml", block)
configs = {
    "minimal": "",
    "apps": '[nats]\nprefix = "t1"\nstorage = "memory"\n[gateway]\nlisten = "127.0.0.1:0"\n'
            'timestamp_window_secs = 0\nallow_any_timestamp = true\n[[apps]]\nappid = "wx1"\nsecret = "s"\ntoken = 123456\n'
            'encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"\n'
            '[[apps]]\nappid = "wx2"\nsecret = "s"\ntoken = "t"\nkind = "subscription"\ntoken_api = "classic"\n',
    "urls": '[nats]\nurl = "nats://user:pw@host:4222/x"\n[redis]\nurl = "redis://:pw@h/0"\ncluster = true\n'
            '[web]\nreturn_urls = ["https://a/"]\nsession_secret = "k"\n[api]\ntokens = ["t"]\n',
}
for name, text in configs.items():
    put("config_load", f"hand_{name}.toml", text)
for target, n in sorted(counts.items()):
    print(f"{target}: {n} seeds")
PY

# envelope_decode: the envelope JSON the gateway publishes for every fixture.
cargo run --quiet --manifest-path "$here/Cargo.toml" --example envelopes -- \
    "$shared/fixtures/inbound" "$corpus/envelope_decode"
