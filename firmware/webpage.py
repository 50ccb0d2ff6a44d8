# The board's status page (issue 16): PAGE in pieces of at most 192 bytes, with the places for
# the station's own values between them (the str names ID, STATUS, FIELDS), and pieces(),
# which sends it. web.py imports this module for each GET / and drops it again: the page is
# never held in RAM between loads and never needs one large block (on a fragmented 192K heap
# the ~1.5 KB page string was the kind of allocation that fails). Labels and units are
# fields.py's; the decimals per unit are the page's own (D in the script).
import json

import fields


def _esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def pieces(station_id, status):
    """The page a piece at a time, the station's values put in: its id, its status, and the
    fields (key, label, unit) of fields.READINGS."""
    for p in PAGE:
        if type(p) is bytes:    # most pieces; no bytes == str compare (a warning per piece on the unix port)
            yield p
        elif p == "ID":
            yield _esc(station_id)
        elif p == "STATUS":
            yield _esc(status)
        elif p == "FIELDS":
            sep = ""
            for r in fields.READINGS:
                # JSON in a <script>: "<" escaped so that no label can end the script
                yield sep + json.dumps((r[0], r[2], r[1])).replace("<", "\\u003c")  # key, label, unit
                sep = ","
        else:
            yield p


PAGE = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8">\n<meta name="viewport" content="width=device-width,initial-scale=1"><title>PicoCharge ',
    'ID',
    b'</title>\n<style>body{font:16px system-ui,sans-serif;margin:0;background:#f2f4f7;color:#123}\nheader{background:#123;color:#fff;padding:.8rem 1rem}h1{font-size:1.2rem;margin:0}\n',
    b'#st{display:inline-block;margin-top:.4rem;padding:.15rem .7rem;border-radius:1rem;background:#789;font-weight:600}\n',
    b'.Available{background:#2a7!important}.Charging{background:#27c!important}.Faulted{background:#c33!important}\n',
    b'main{display:grid;grid-template-columns:repeat(auto-fill,minmax(9rem,1fr));gap:.6rem;padding:.8rem;max-width:44rem}\n',
    b'.c{background:#fff;border-radius:.5rem;padding:.6rem .8rem;box-shadow:0 1px 2px #0002}\n.l{font-size:.8rem;color:#567}.v{font-size:1.4rem;font-variant-numeric:tabular-nums;white-space:nowrap}\n',
    b'footer{padding:0 1rem 1rem;font-size:.8rem;color:#567}.old main{opacity:.4}</style></head>\n<body><header><h1>PicoCharge ',
    'ID',
    b'</h1><span id="st">',
    'STATUS',
    b'</span></header><main id="m"></main>\n<footer id="f">loading\xe2\x80\xa6</footer><script>\nvar F=[',
    'FIELDS',
    b'],D={degC:1,"%RH":0,A:2,V:1,W:0,Wh:1},U={degC:"\xc2\xb0C","%RH":"%"};\nfunction $(i){return document.getElementById(i)}\nfunction n(v,d){return v==null?"\xe2\x80\x93":Number(v).toFixed(d)}\n',
    b'function u(){fetch("/api/status").then(function(r){return r.json()}).then(function(d){\nvar h="";F.forEach(function(f){if(!(f[0]in d.readings))return;\n',
    b'h+=\'<div class="c"><div class="l">\'+f[1]+\'</div><div class="v">\'+n(d.readings[f[0]],f[2]in D?D[f[2]]:2)+" "+(U[f[2]]||f[2])+"</div></div>"});\n',
    b'$("m").innerHTML=h;var s=$("st");s.className=d.status;\ns.textContent=d.status+(d.fault?": "+(d.fault_info||d.fault):"")+(d.relay?" \xc2\xb7 relay closed":"");\n',
    b'var t=d.uptime_s,k=[];for(var x in d.links)k.push(x+" "+d.links[x]);\n',
    b'$("f").textContent=k.join(" \xc2\xb7 ")+" \xc2\xb7 up "+Math.floor(t/86400)+"d "+Math.floor(t%86400/3600)+"h "+Math.floor(t%3600/60)+"m \xc2\xb7 "+n(d.mem_free/1024,1)+" KB free \xc2\xb7 firmware "+d.firmware+" \xc2\xb7 "+',
    b'new Date().toLocaleTimeString();\ndocument.body.className=""}).catch(function(){document.body.className="old";$("f").textContent="no answer from the station: retrying"})}\n',
    b'u();setInterval(u,3000)</script></body></html>',
)
