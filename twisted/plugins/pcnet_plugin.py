from twisted.application.service import ServiceMaker

pcnet = ServiceMaker("pcnet", "pcnet.tap", "pcnet print management (app, provider, site)", "pcnet")
