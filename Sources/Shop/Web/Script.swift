/// The site's one script, a progressive extra: without it every page still works (the order
/// page then shows the status as it was when loaded). With it, the order page's status follows
/// the order as it changes, from the server-sent events of `/orders/{id}/events`.
enum Script {
    static let text = """
        "use strict";
        (function () {
          var status = document.getElementById("order-status");
          if (!status || !status.dataset.watch || !window.EventSource) { return; }
          var source = new EventSource(status.dataset.watch);
          source.addEventListener("status", function (e) {
            status.textContent = e.data;
            status.dataset.status = e.data;
          });
          source.addEventListener("end", function () { source.close(); });
        })();

        """
}
