// sipmeter web UI: a little plain JavaScript, no build step.
(function () {
  "use strict";
  var DEFAULT_PORTS = { UDP: 5060, TCP: 5060, TLS: 5061, WSS: 443 };

  // Registration URI, as the server computes it (store::registration_uri).
  function registrationUri(domain, port, transport) {
    var host = domain.trim();
    if (!host) { host = "DOMAIN"; }
    if (host.indexOf(":") >= 0 && host.charAt(0) !== "[") { host = "[" + host + "]"; }
    var p = port.trim() || DEFAULT_PORTS[transport];
    if (transport === "AUTO") { return "sip:" + host + (port.trim() ? ":" + port.trim() : ""); }
    return "sip:" + host + ":" + p + ";transport=" + transport.toLowerCase();
  }

  var form = document.getElementById("registrar-form");
  if (form) {
    var domain = document.getElementById("domain");
    var port = document.getElementById("port");
    var transport = document.getElementById("transport");
    var preview = document.getElementById("uri-preview");
    var note = document.getElementById("uri-note");
    var tls = document.getElementById("tls-fields");
    var update = function () {
      var t = transport.value;
      preview.textContent = registrationUri(domain.value, port.value, t);
      port.placeholder = DEFAULT_PORTS[t] ? String(DEFAULT_PORTS[t]) : "DNS decides";
      note.textContent = t === "AUTO"
        ? "AUTO: DNS discovery (RFC 3263) picks transport, host and port (NAPTR → SRV → A/AAAA, else UDP 5060)."
        : "";
      tls.hidden = !(t === "TLS" || t === "WSS" || t === "AUTO");
    };
    [domain, port].forEach(function (el) { el.addEventListener("input", update); });
    transport.addEventListener("change", update);
    update();
    Array.prototype.forEach.call(form.querySelectorAll("input[type=file][data-pem-target]"), function (input) {
      input.addEventListener("change", function () {
        var file = input.files && input.files[0];
        if (!file) { return; }
        var reader = new FileReader();
        reader.onload = function () { document.getElementById(input.dataset.pemTarget).value = reader.result; };
        reader.readAsText(file);
        input.value = "";
      });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("input[type=file][data-csv-target]"), function (input) {
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (!file) { return; }
      var reader = new FileReader();
      reader.onload = function () { document.getElementById(input.dataset.csvTarget).value = reader.result; };
      reader.readAsText(file);
      input.value = "";
    });
  });

  Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.dataset.confirm)) { e.preventDefault(); }
    });
  });

  var toggle = document.getElementById("menu-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var open = document.body.classList.toggle("menu-open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }
})();
