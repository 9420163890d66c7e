// "Try it" form: turn the fields into one MLflow dataframe record and POST it as JSON.
// Plain JavaScript (no framework, no CDN), loaded only on pages that show the form.
(function () {
  "use strict";

  function value(input) {
    var type = input.dataset.type;
    if (type === "boolean") return input.checked;
    if (input.value === "") return null;
    if (type === "double" || type === "float") return parseFloat(input.value);
    if (type === "long" || type === "integer") return parseInt(input.value, 10);
    return input.value;
  }

  function records(form) {
    var box = form.querySelector("[data-type=records]");
    if (box) {
      var parsed = JSON.parse(box.value);
      return Array.isArray(parsed) ? parsed : [parsed];
    }
    var record = {};
    form.querySelectorAll("input[data-type]").forEach(function (input) {
      var v = value(input);
      if (v !== null) record[input.name] = v;
    });
    return [record];
  }

  function show(target, text, isError) {
    target.textContent = "";
    var pre = document.createElement("pre");
    pre.textContent = text; // text, never HTML: the answer is untrusted
    if (isError) pre.className = "error";
    target.appendChild(pre);
  }

  document.querySelectorAll("form.try-it-form").forEach(function (form) {
    var result = form.parentElement.querySelector(".try-it-result");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!form.reportValidity()) return;
      var body;
      try {
        body = JSON.stringify({ dataframe_records: records(form) });
      } catch (err) {
        show(result, "The records are not valid JSON: " + err.message, true);
        return;
      }
      show(result, "Asking the model…", false);
      fetch(form.dataset.predictUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value,
        },
        body: body,
      })
        .then(function (response) {
          return response.text().then(function (text) {
            var shown = text;
            try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
            show(result, response.ok ? shown : "The model answered " + response.status + ":\n" + shown, !response.ok);
          });
        })
        .catch(function (err) {
          show(result, "Could not reach the model: " + err.message, true);
        });
    });
  });
})();
